"""Reading shard bytes back: tar stream -> raw samples -> decoded numpy samples.

Only the contract's members are decoded (jpg, npy without pickle, json); anything else
in a shard is reported and never decoded, and nothing is ever extracted to disk.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import IO, Any

import numpy as np

from shards.errors import UserError
from shards.format import (
    ACTIONS_MEMBER,
    META_MEMBER,
    camera_member,
    decode_actions,
    decode_jpeg,
    decode_meta,
)
from shards.tar import TarFormatError, iter_members

RawSample = dict[str, Any]  # {"__key__": str, field: bytes, ...}


class ShardReadError(UserError):
    """A shard is truncated or not a tar file."""


class SampleError(Exception):
    """A sample lacks a contract member or a member does not decode."""


def split_member_name(name: str) -> tuple[str, str]:
    """`dir/key.field.ext` -> (`dir/key`, `field.ext`): split at the base name's first dot."""
    slash = name.rfind("/") + 1
    dot = name.find(".", slash)
    if dot < 0:
        return name, ""
    return name[:dot], name[dot + 1 :].lower()


def iter_raw_samples(stream: IO[bytes], source: str) -> Iterator[RawSample]:
    """Group consecutive regular members of a tar stream by key; no seeking, nothing on disk."""
    current: RawSample | None = None
    try:
        # Links, folders and devices are never part of a sample: only regular files come back.
        for name, data in iter_members(stream):
            key, field = split_member_name(name)
            if current is not None and current["__key__"] != key:
                yield current
                current = None
            if current is None:
                current = {"__key__": key}
            current[field] = data
    except (TarFormatError, UnicodeDecodeError, ValueError, OSError) as exc:
        raise ShardReadError(f"{source}: truncated or not a tar file ({exc})") from None
    if current is not None:
        yield current


def contract_fields(cameras: Iterable[str]) -> tuple[str, ...]:
    return (*(camera_member(c) for c in cameras), ACTIONS_MEMBER, META_MEMBER)


def extra_fields(raw: RawSample, cameras: Iterable[str]) -> list[str]:
    """Members of a raw sample that the contract does not define for a set with these cameras."""
    allowed = set(contract_fields(cameras))
    return sorted(f for f in raw if not f.startswith("__") and f not in allowed)


def decode_sample(
    raw: RawSample, cameras: Iterable[str], images_out: np.ndarray | None = None
) -> dict[str, Any]:
    """Decode the contract members for `cameras`: images uint8 (H, W, 3), actions float32.

    With `images_out` (N, H, W, 3), camera k is decoded straight into `images_out[k]` (the
    loader passes a slot of its shared-memory batch, saving three copies per image), and an
    image of another size is a SampleError.
    """
    key = raw["__key__"]
    cameras = tuple(cameras)
    missing = [f for f in contract_fields(cameras) if f not in raw]
    if missing:
        raise SampleError(f"sample {key}: missing member(s) {', '.join(missing)}")
    try:
        if images_out is None:
            images = {c: decode_jpeg(raw[camera_member(c)]) for c in cameras}
        else:
            images = {}
            for k, c in enumerate(cameras):
                images[c] = decode_jpeg(raw[camera_member(c)], images_out[k])
                if images[c].shape != images_out.shape[1:]:
                    raise ValueError(f"{c}.jpg is {images[c].shape}, not {images_out.shape[1:]}")
        actions = decode_actions(raw[ACTIONS_MEMBER])
        meta = decode_meta(raw[META_MEMBER])
    except (ValueError, OSError) as exc:
        raise SampleError(f"sample {key}: a member does not decode ({exc})") from None
    if actions.dtype != np.float32 or actions.ndim != 2:
        raise SampleError(f"sample {key}: actions.npy is {actions.dtype} {actions.shape}")
    return {"key": key, "images": images, "actions": actions, "meta": meta}
