"""What inspects a finished shard set: verify, info, preview."""
