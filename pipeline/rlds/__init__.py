"""Reading TensorFlow Datasets (RLDS) episodes without TensorFlow: framing, Example, features."""
