"""The shard contract: names, sample keys and how each member is encoded and decoded.

Every other module that touches shard bytes goes through here, so the contract in
docs/FORMAT.md has exactly one implementation.
"""

from __future__ import annotations

import io
import json
import re
from typing import Any

import numpy as np
import simplejpeg

FORMAT_NAME = "vla-shards"
FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
STATS_FILE = "stats.json"
SPLITS = ("train", "val")
CAMERAS = ("head", "low", "left_wrist", "right_wrist")
ACTIONS_MEMBER = "actions.npy"
META_MEMBER = "meta.json"
JPG_SUFFIX = ".jpg"

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


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    """RGB uint8 (H, W, 3) -> JPEG bytes (4:2:0, deterministic for the same input)."""
    return simplejpeg.encode_jpeg(np.ascontiguousarray(image), quality=quality, colorspace="RGB")


def decode_jpeg(data: bytes) -> np.ndarray:
    """JPEG bytes -> RGB uint8 (H, W, 3)."""
    return simplejpeg.decode_jpeg(data, colorspace="RGB")


def encode_actions(chunk: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(chunk, dtype=np.float32), allow_pickle=False)
    return buf.getvalue()


def decode_actions(data: bytes) -> np.ndarray:
    # allow_pickle=False: shard sets come from other teams and are data, never code.
    return np.load(io.BytesIO(data), allow_pickle=False)


def encode_meta(meta: dict[str, Any]) -> bytes:
    return json.dumps(meta, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def decode_meta(data: bytes) -> dict[str, Any]:
    return json.loads(data)
