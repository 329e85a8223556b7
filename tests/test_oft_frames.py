"""OpenVLA-OFT's evaluation image path, against its steps written out here independently."""

from __future__ import annotations

import io

import numpy as np
import simplejpeg
from oft_fixtures import reference_crop
from PIL import Image

from trainer.inference.oft_frames import oft_frame


def _frame(h, w, seed=0):
    rng = np.random.default_rng(seed)
    # Smooth content with some texture: JPEG and the filters behave as on camera frames.
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (h + w)], axis=-1)
    return np.clip(base + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)


def test_a_224_frame_skips_jpeg_and_resize_and_is_centre_cropped_as_tensorflow_does():
    frame = _frame(224, 224)
    assert oft_frame(frame, center_crop=False) is frame
    np.testing.assert_array_equal(oft_frame(frame, center_crop=True), reference_crop(frame))


def test_another_size_goes_through_jpeg_95_and_lanczos_first():
    frame = _frame(256, 320, seed=1)
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, "JPEG", quality=95, subsampling="4:2:0")
    # tf.io.decode_image: libjpeg's fast integer DCT, smooth (fancy) chroma upsampling.
    decoded = simplejpeg.decode_jpeg(buffer.getvalue(), fastdct=True, fastupsample=False)
    resized = np.asarray(Image.fromarray(decoded).resize((224, 224), Image.Resampling.LANCZOS))
    got = oft_frame(frame, center_crop=False)
    assert got.shape == (224, 224, 3) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, resized)
    np.testing.assert_array_equal(oft_frame(frame, center_crop=True), reference_crop(resized))
