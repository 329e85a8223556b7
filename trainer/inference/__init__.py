"""Using a trained checkpoint: the deployable Policy, predict, export."""
