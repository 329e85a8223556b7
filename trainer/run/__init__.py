"""A training run: its config, the builder, the loop and step, checkpoints, ranks, metrics."""
