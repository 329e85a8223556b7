"""The device side of a run's data: batches moved, augmented and normalized."""
