"""OpenVLA-OFT's evaluation image path, against its steps written out here independently."""

from __future__ import annotations

import io

import numpy as np
import simplejpeg
from PIL import Image

from trainer.inference.oft_frames import oft_frame


def _reference_crop(image: np.ndarray) -> np.ndarray:
    """tf.image.crop_and_resize on the central 0.9-area box, as its CPU kernel computes it (float32,
    per output pixel), then convert_image_dtype's x * 255.5 truncated; a plain loop."""
    f32 = np.float32
    x = image.astype(f32) * f32(1.0 / 255)
    side = np.sqrt(f32(0.9), dtype=f32)
    y1 = x1 = (f32(1) - side) / f32(2)
    y2 = x2 = y1 + side
    h, w = image.shape[:2]
    hs = (y2 - y1) * f32(h - 1) / f32(223)
    ws = (x2 - x1) * f32(w - 1) / f32(223)
    out = np.zeros((224, 224, 3), np.uint8)
    for y in range(224):
        in_y = y1 * f32(h - 1) + f32(y) * hs
        top, bottom = int(np.floor(in_y)), int(np.ceil(in_y))
        y_lerp = f32(in_y - f32(top))
        for xx in range(224):
            in_x = x1 * f32(w - 1) + f32(xx) * ws
            left, right = int(np.floor(in_x)), int(np.ceil(in_x))
            x_lerp = f32(in_x - f32(left))
            tl, tr = x[top, left], x[top, right]
            bl, br = x[bottom, left], x[bottom, right]
            t = tl + (tr - tl) * x_lerp
            b = bl + (br - bl) * x_lerp
            v = np.clip(t + (b - t) * y_lerp, 0, 1)
            out[y, xx] = (v * f32(255.5)).astype(np.uint8)
    return out


def _frame(h, w, seed=0):
    rng = np.random.default_rng(seed)
    # Smooth content with some texture: JPEG and the filters behave as on camera frames.
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (h + w)], axis=-1)
    return np.clip(base + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)


def test_a_224_frame_skips_jpeg_and_resize_and_is_centre_cropped_as_tensorflow_does():
    frame = _frame(224, 224)
    assert oft_frame(frame, center_crop=False) is frame
    np.testing.assert_array_equal(oft_frame(frame, center_crop=True), _reference_crop(frame))


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
    np.testing.assert_array_equal(oft_frame(frame, center_crop=True), _reference_crop(resized))
