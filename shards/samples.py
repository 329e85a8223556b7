"""Reading shard bytes back: tar stream -> raw samples -> decoded numpy samples, and the
sample contract's rules, shared by the reader and `vla-data verify`.

Only the contract's members are decoded (jpg, npy without pickle, json); anything else
in a shard is reported and never decoded, and nothing is ever extracted to disk.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from typing import IO, Any

import numpy as np

from common.errors import UserError
from shards.format import (
    ACTIONS_MEMBER,
    META_MEMBER,
    camera_member,
    decode_actions,
    decode_jpeg,
    decode_meta,
    jpeg_shape,
    sample_key,
)
from shards.manifest import Manifest
from shards.tar import TarFormatError, iter_members

RawSample = dict[str, Any]  # {"__key__": str, field: bytes, ...}
_META_FIELDS = {"episode": str, "t": int, "steps": int, "valid": int, "instructions": list,
                "unseen": list, "dataset": str}  # fmt: skip


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
    """Members of a raw sample that the contract does not define for a set with these cameras.

    The reader asks this of every sample, so the contract's members are a cached set and
    the usual answer (none) is one set difference.
    """
    extra = raw.keys() - _contract_set(tuple(cameras))
    return sorted(f for f in extra if not f.startswith("__"))


@functools.lru_cache(maxsize=16)
def _contract_set(cameras: tuple[str, ...]) -> frozenset[str]:
    return frozenset(contract_fields(cameras))


def decode_sample(
    raw: RawSample,
    cameras: Iterable[str],
    manifest: Manifest,
    images_out: np.ndarray | None = None,
    decode_images: bool = True,
) -> dict[str, Any]:
    """Decode the contract members for `cameras` and check what every reader relies on.

    Images uint8 (S, S, 3) for the set's image_size S, actions float32 (chunk, action_dim),
    meta.json an object with instructions and a valid row count in 1..chunk; else a
    SampleError naming the sample. The reader calls this for every sample, so it holds only
    these cheap checks; `vla-data verify` adds meta_problems.

    With `images_out` (N, S, S, 3), camera k is decoded straight into `images_out[k]` (the
    loader passes a slot of its shared-memory batch, saving three copies per image).
    Without `decode_images`, each camera's JPEG bytes are kept undecoded for the GPU to
    decode, and checked as far as their headers tell (jpeg_shape): the same SampleErrors.

    The three steps are also public, for a loader that runs them on different threads:
    check_members first, then sample_images and sample_labels in either order.
    """
    cameras = tuple(cameras)
    check_members(raw, cameras)
    images = sample_images(raw, cameras, manifest, images_out, decode_images)
    actions, meta = sample_labels(raw, manifest)
    return {"key": raw["__key__"], "images": images, "actions": actions, "meta": meta}


def check_members(raw: RawSample, cameras: Iterable[str]) -> None:
    """SampleError unless the raw sample has every contract member for `cameras`."""
    missing = [f for f in contract_fields(cameras) if f not in raw]
    if missing:
        raise SampleError(f"sample {raw['__key__']}: missing member(s) {', '.join(missing)}")


def sample_images(
    raw: RawSample,
    cameras: tuple[str, ...],
    manifest: Manifest,
    images_out: np.ndarray | None = None,
    decode_images: bool = True,
) -> dict[str, np.ndarray | bytes]:
    """Each camera's image, decoded (into `images_out[k]` when given) or its JPEG bytes
    checked as far as their header tells; SampleError for one of another size or none at all.

    Only C calls that release the GIL and a few comparisons: decode threads run this.
    """
    key = raw["__key__"]
    size = manifest.image_size
    image_shape = (size, size, 3)
    if images_out is not None and images_out.shape[1:] != image_shape:
        # Mixed sets agree on image size (checked at start); this guards a lying manifest.
        raise SampleError(f"sample {key}: set image size {size}, batch {images_out.shape[1:]}")
    images: dict[str, np.ndarray | bytes] = {}
    try:
        for k, c in enumerate(cameras):
            data = raw[camera_member(c)]
            if decode_images:
                image = decode_jpeg(data, None if images_out is None else images_out[k])
                images[c], shape = image, image.shape
            else:
                images[c], shape = data, jpeg_shape(data)
            if shape != image_shape:
                raise SampleError(f"sample {key}: {c}.jpg is {shape}, not {image_shape}")
    except (ValueError, OSError) as exc:
        raise SampleError(f"sample {key}: a member does not decode ({exc})") from None
    return images


def sample_labels(raw: RawSample, manifest: Manifest) -> tuple[np.ndarray, dict[str, Any]]:
    """(actions, meta) checked as every reader relies on; SampleError otherwise."""
    key = raw["__key__"]
    try:
        actions = decode_actions(raw[ACTIONS_MEMBER])
        meta = decode_meta(raw[META_MEMBER])
    except (ValueError, OSError) as exc:
        raise SampleError(f"sample {key}: a member does not decode ({exc})") from None
    want = (manifest.chunk, manifest.action_dim)
    if actions.dtype != np.float32 or actions.shape != want:
        raise SampleError(
            f"sample {key}: actions.npy is {actions.dtype} {actions.shape}, expected {want}"
        )
    instructions, valid = meta.get("instructions"), meta.get("valid")
    if not instructions or not isinstance(valid, int) or not 1 <= valid <= manifest.chunk:
        raise SampleError(f"sample {key}: meta.json lacks instructions or valid")
    return actions, meta


def sample_proprio(meta: dict[str, Any], dims: int | None, key: str) -> np.ndarray:
    """meta.json's robot state as (dims,) float32; anything else makes the sample bad."""
    value = meta.get("proprio")
    try:
        state = np.asarray(value, dtype=np.float32) if isinstance(value, list) else None
    except (TypeError, ValueError):
        state = None
    if state is None or state.shape != (dims,) or not np.isfinite(state).all():
        raise SampleError(f"sample {key}: meta.json's proprio is not {dims} finite numbers")
    return state


def meta_problems(key: str, meta: dict[str, Any], manifest: Manifest) -> list[str]:
    """The rest of the contract's meta.json rules, past decode_sample's: `vla-data verify`
    checks them; the reader needs none of them to build a batch."""
    wrong = [f for f, kind in _META_FIELDS.items() if not isinstance(meta.get(f), kind)]
    if wrong:
        return [f"sample {key}: meta.json lacks or mistypes {', '.join(wrong)}"]
    problems = []
    if key != sample_key(meta["episode"], meta["t"]):
        problems.append(f"sample {key}: key does not match meta episode/t")
    if not 0 <= meta["t"] < meta["steps"]:
        problems.append(f"sample {key}: t={meta['t']} outside the episode's {meta['steps']} steps")
    if meta["valid"] != min(manifest.chunk, meta["steps"] - meta["t"]):
        problems.append(f"sample {key}: valid={meta['valid']} disagrees with t and steps")
    if meta["dataset"] != manifest.dataset:
        problems.append(
            f"sample {key}: dataset {meta['dataset']!r}, manifest says {manifest.dataset!r}"
        )
    if manifest.proprio_dim is not None:
        try:
            sample_proprio(meta, manifest.proprio_dim, key)
        except SampleError as exc:
            problems.append(str(exc))
    elif meta.get("proprio") is not None:
        problems.append(f"sample {key}: meta.json has a proprio, the manifest no proprio_dim")
    return problems
