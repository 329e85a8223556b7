"""OpenVLA-OFT's evaluation image path, for policies imported from OFT: frame -> 224x224 uint8.

OFT's experiments/robot/openvla_utils.py hands the processor each camera frame this way:
a frame that is not already 224x224 is JPEG-encoded (tf.image.encode_jpeg: quality 95, 4:2:0,
libjpeg's accurate integer DCT) and decoded (tf.io.decode_image: the fast integer DCT, which
TensorFlow chooses for decoding, and smooth chroma upsampling), resized to 224 with
antialiased Lanczos-3 and rounded to uint8; then, for policies trained with random crops, the
central 90% of the area is cropped and resized back to 224 by tf.image.crop_and_resize
(bilinear) and converted to uint8 by tf.image.convert_image_dtype (x * 255.5, truncated).
We run the same steps with libjpeg (PIL encodes, simplejpeg decodes, each set as TensorFlow
sets it) and PIL's Lanczos filter, which may differ from TensorFlow's by a grey level on some
pixels; the crop and the conversions follow TensorFlow's float32 arithmetic exactly.
"""

from __future__ import annotations

import io

import numpy as np
import simplejpeg
from PIL import Image

OFT_SIZE = 224
OFT_JPEG_QUALITY = 95  # tf.image.encode_jpeg's default, with 4:2:0 chroma
CROP_SCALE = 0.9  # the area kept by the centre crop


def oft_resize(image: np.ndarray) -> np.ndarray:
    """A frame not already 224x224: JPEG round trip, then Lanczos to 224 (OFT's
    resize_image_for_policy); a 224x224 frame is returned as it is, as OFT does."""
    if image.shape[:2] == (OFT_SIZE, OFT_SIZE):
        return image
    # PIL drives libjpeg as TensorFlow's encoder does (its defaults, accurate DCT).
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=OFT_JPEG_QUALITY, subsampling="4:2:0")
    data = buffer.getvalue()
    decoded = simplejpeg.decode_jpeg(data, colorspace="RGB", fastdct=True, fastupsample=False)
    resized = Image.fromarray(decoded).resize((OFT_SIZE, OFT_SIZE), Image.Resampling.LANCZOS)
    return np.asarray(resized)


def crop_box(scale: float = CROP_SCALE) -> tuple[np.float32, np.float32]:
    """(offset, side) of the centred square box, in [0, 1] units, computed in float32."""
    side = np.sqrt(np.float32(scale), dtype=np.float32)
    return (np.float32(1) - side) / np.float32(2), side


def oft_center_crop(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (224, 224, 3) uint8: tf.image.crop_and_resize of the central
    CROP_SCALE box (bilinear, float32), clipped to [0, 1], then x * 255.5 truncated."""
    x = image.astype(np.float32) * np.float32(1.0 / 255)  # convert_image_dtype's scale
    offset, side = crop_box()
    rows = _sample_positions(offset, side, image.shape[0])
    cols = _sample_positions(offset, side, image.shape[1])
    top, bottom, y_lerp = _neighbours(rows)
    left, right, x_lerp = _neighbours(cols)
    x_lerp = x_lerp[None, :, None]
    upper = x[top][:, left] + (x[top][:, right] - x[top][:, left]) * x_lerp
    lower = x[bottom][:, left] + (x[bottom][:, right] - x[bottom][:, left]) * x_lerp
    out = upper + (lower - upper) * y_lerp[:, None, None]
    out = np.clip(out, 0, 1)
    return (out * np.float32(255.5)).astype(np.uint8)  # convert_image_dtype(saturate=True)


def _sample_positions(offset: np.float32, side: np.float32, size: int) -> np.ndarray:
    """crop_and_resize's input coordinates for each output pixel along one axis (float32)."""
    start, end = offset, offset + side
    scale = (end - start) * np.float32(size - 1) / np.float32(OFT_SIZE - 1)
    return start * np.float32(size - 1) + np.arange(OFT_SIZE, dtype=np.float32) * scale


def _neighbours(pos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    low = np.floor(pos)
    return low.astype(np.int64), np.ceil(pos).astype(np.int64), (pos - low).astype(np.float32)


def oft_frame(image: np.ndarray, center_crop: bool) -> np.ndarray:
    """One camera frame as OFT's evaluation feeds it to the processor."""
    resized = oft_resize(image)
    return oft_center_crop(resized) if center_crop else resized
