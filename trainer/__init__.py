"""Fine-tuning OpenVLA on shard sets: model/, data/ (device-side batches), run/, inference/."""
