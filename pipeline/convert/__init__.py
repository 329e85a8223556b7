"""Episodes -> shard set, stage by stage: stages.py lists the stages in order."""
