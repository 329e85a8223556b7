"""Fine-tuning OpenVLA on shard sets: config, device-side batches, step, loop, checkpoints, CLI."""
