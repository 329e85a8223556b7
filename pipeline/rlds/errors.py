"""What can be wrong with a TFDS set, by where: the folder, a record's bytes, its contents."""


class RldsError(Exception):
    """A folder that is not a usable TFDS set; the message names it and the fix."""


class RecordError(Exception):
    """A record that cannot be read: bad checksum, truncated, or past the end of its file."""


class ExampleError(Exception):
    """A record that is not the tf.train.Example its features.json describes."""


class ImageError(Exception):
    """Bytes that do not decode to an RGB image."""
