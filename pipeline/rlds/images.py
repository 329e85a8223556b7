"""Encoded frames of an RLDS record (JPEG or PNG, as TFDS's Image feature stores them) -> RGB."""

from __future__ import annotations

import io

import numpy as np
import simplejpeg
from PIL import Image, UnidentifiedImageError

from pipeline.rlds.errors import ImageError

_JPEG = b"\xff\xd8"
_PNG = b"\x89PNG\r\n\x1a\n"


def decode_image(data: bytes) -> np.ndarray:
    """uint8 (H, W, 3) RGB from JPEG or PNG bytes (grey or RGBA become RGB)."""
    try:
        if data.startswith(_JPEG):
            # TFDS encodes RGB arrays as RGB JPEGs, so no channel swap is undone here.
            image = simplejpeg.decode_jpeg(data, colorspace="RGB")
        elif data.startswith(_PNG):
            with Image.open(io.BytesIO(data)) as im:
                image = np.asarray(im.convert("RGB"))
        else:
            raise ImageError(f"is neither JPEG nor PNG (starts {data[:8].hex()})")
    except (ValueError, OSError, UnidentifiedImageError) as e:
        raise ImageError(f"does not decode ({e})") from e
    if image.ndim != 3 or image.shape[2] != 3:
        raise ImageError(f"decodes to shape {image.shape}")
    return image
