"""The shard contract: names, sample keys and how each member is encoded and decoded.

Every other module that touches shard bytes goes through here, so the contract in
docs/FORMAT.md has exactly one implementation.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import simplejpeg
from PIL import Image

FORMAT_NAME = "vla-shards"
# The newest format version this tool reads and writes. A set is written as the oldest
# version that holds what it uses (shards/manifest.py `needed_version`), so readers that
# predate an addition read every set that does not use it, and refuse, by version, one that does.
FORMAT_VERSION = 2
SOURCE_VERSION = 2  # version 2 added episode entries' optional `source` and `dropped_steps`
MANIFEST_FILE = "manifest.json"
STATS_FILE = "stats.json"
SPLITS = ("train", "val")
CAMERAS = ("head", "low", "left_wrist", "right_wrist")
ACTIONS_MEMBER = "actions.npy"
META_MEMBER = "meta.json"
JPG_SUFFIX = ".jpg"
# Chroma subsampling of stored frames. 4:2:0 is what TFDS writes into the RLDS datasets
# OpenVLA and OFT train on (tf.image.encode_jpeg's default) and decodes about twice as fast
# as 4:4:4; sets made before the manifest recorded it hold 4:4:4.
SUBSAMPLINGS = ("420", "444")
SUBSAMPLING_BEFORE_RECORDED = "444"

# Keys end in `_{t:06d}`; webdataset splits a member name at its first dot, so no dots.
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]")


def shard_name(split: str, index: int) -> str:
    return f"{split}-{index:06d}.tar"


def episode_key(relative_path: str) -> str:
    """The `{episode}` part of sample keys: relative path without `.hdf5`, separators as `-`.

    Characters webdataset or HF datasets would misread (dots, spaces) also become `-`,
    and leading `_`/`-` are dropped (HF skips members starting with `_` or `.`).
    Uniqueness across a set is the caller's check: two paths can map to one key.
    """
    stem = relative_path[: -len(".hdf5")] if relative_path.endswith(".hdf5") else relative_path
    key = _KEY_UNSAFE.sub("-", stem.replace("\\", "/").replace("/", "-")).lstrip("_-")
    return key or "episode"


def sample_key(episode: str, t: int) -> str:
    return f"{episode}_{t:06d}"


def camera_member(camera: str) -> str:
    return camera + JPG_SUFFIX


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> (size, size, 3) with PIL's bicubic filter, antialiased when shrinking.

    The contract's resize: the converter stores images made this way, and a trained policy
    must see camera frames made the same way at inference.
    """
    if image.shape[:2] == (size, size):
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC))


@dataclass(frozen=True)
class JpegStorage:
    """How a set's frames were JPEG-encoded: a deployed policy repeats it on camera frames."""

    quality: int
    subsampling: str = "420"  # chroma: one of SUBSAMPLINGS


def jpeg_storage(options: Mapping[str, Any]) -> JpegStorage | None:
    """The JpegStorage a manifest's (or a checkpoint's mixture) record states; None when the
    quality is not recorded. Records without a subsampling predate it: those sets hold 4:4:4."""
    quality = options.get("jpeg_quality")
    if quality is None:
        return None
    return JpegStorage(quality, options.get("jpeg_subsampling", SUBSAMPLING_BEFORE_RECORDED))


def encode_jpeg(image: np.ndarray, jpeg: JpegStorage) -> bytes:
    """RGB uint8 (H, W, 3) -> baseline JPEG bytes (deterministic for the same input)."""
    return simplejpeg.encode_jpeg(np.ascontiguousarray(image), quality=jpeg.quality,
                                  colorspace="RGB", colorsubsampling=jpeg.subsampling)  # fmt: skip


def decode_jpeg(data: bytes, out: np.ndarray | None = None) -> np.ndarray:
    """JPEG bytes -> RGB uint8 (H, W, 3), decoded into `out` when given (no copy).

    The result's shape is the image's: a caller passing `out` checks it matches.
    """
    return simplejpeg.decode_jpeg(data, colorspace="RGB", buffer=out)


_SOI, _EOI = b"\xff\xd8", b"\xff\xd9"
# Start-of-frame markers (baseline, progressive, lossless...): C0-CF but DHT, JPG and DAC.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_SOS = 0xDA


def jpeg_shape(data: bytes) -> tuple[int, int, int]:
    """(height, width, 3) of the RGB image JPEG bytes decode to, read from the frame header
    without decoding; ValueError when the bytes lack a JPEG's start or end marker, or a frame
    header before the scan.

    What the reader checks when the GPU decodes the JPEGs: a decoder in RGB mode gives 3
    channels whatever the file's components, so only 1 (grey) or 3 are accepted, as
    decode_jpeg's libjpeg-turbo accepts.
    """
    if data[:2] != _SOI or data[-2:] != _EOI:
        raise ValueError("not a whole JPEG (no start or end marker)")
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            break
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker in _SOF and length >= 8 and pos + 10 <= len(data):
            height = int.from_bytes(data[pos + 5 : pos + 7], "big")
            width = int.from_bytes(data[pos + 7 : pos + 9], "big")
            if data[pos + 9] not in (1, 3):
                raise ValueError(f"a JPEG of {data[pos + 9]} colour components")
            return height, width, 3
        if marker == _SOS or length < 2:
            break
        pos += 2 + length
    raise ValueError("no JPEG frame header before the image data")


def encode_actions(chunk: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(chunk, dtype=np.float32), allow_pickle=False)
    return buf.getvalue()


_NPY_MAGIC = b"\x93NUMPY"
_npy_headers: dict[bytes, tuple[tuple[int, ...], bool, np.dtype, int]] = {}


def decode_actions(data: bytes) -> np.ndarray:
    """.npy bytes -> array; object (pickled) arrays are refused: shard sets are data, not code.

    Every sample of a set has the same header, so its parse (numpy's literal_eval) and the
    element count are worked out once and cached; that was a tenth of a sample's loading time.
    """
    if data[:6] != _NPY_MAGIC or data[6] not in (1, 2, 3):
        raise ValueError("actions.npy is not a .npy file")
    size_bytes = 2 if data[6] == 1 else 4
    start = 8 + size_bytes + int.from_bytes(data[8 : 8 + size_bytes], "little")
    header = data[:start]
    parsed = _npy_headers.get(header)
    if parsed is None:
        stream = io.BytesIO(data)
        major, _ = np.lib.format.read_magic(stream)
        if major == 1:
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
        if dtype.hasobject:
            raise ValueError("actions.npy holds Python objects; refusing to unpickle")
        parsed = (shape, fortran, dtype, int(np.prod(shape)))
        if len(_npy_headers) < 64:  # bounded: a hostile shard cannot grow it
            _npy_headers[header] = parsed
    shape, fortran, dtype, count = parsed
    if len(data) - start < count * dtype.itemsize:
        raise ValueError("actions.npy is shorter than its header says")
    array = np.frombuffer(data, dtype=dtype, count=count, offset=start)
    return array.reshape(shape, order="F" if fortran else "C").copy()


def encode_meta(meta: dict[str, Any]) -> bytes:
    return json.dumps(meta, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def decode_meta(data: bytes) -> dict[str, Any]:
    """meta.json as a dict; ValueError when it does not parse or is not a JSON object."""
    meta = json.loads(data)
    if not isinstance(meta, dict):
        raise ValueError(f"meta.json holds a JSON {type(meta).__name__}, not an object")
    return meta
