"""JPEG-carrying batches -> the uint8 images BatchPrep takes, decoded by torchvision on the
training device (nvJPEG on CUDA) in one batched call per batch."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_jpeg

from shards.format import JpegStorage, encode_jpeg
from shards.source import ShardSetError

log = logging.getLogger(__name__)
# What a batch's per-sample entries are, beside the images: filtered together when a sample's
# JPEG fails on the device.
_PER_SAMPLE = ("actions", "valid", "sets", "proprio", "keys", "instructions")


def decode_images(jpegs: list[torch.Tensor], samples: int, device: torch.device) -> torch.Tensor:
    """Each sample's N camera JPEGs (sample by sample, in camera order) -> (B, N, H, W, 3)
    uint8 on `device`, the layout a loader's decoded batch has.

    torchvision gives (3, H, W) per image: the result is a channels-last view of the
    stacked (B, N, 3, H, W), so BatchPrep's move back to channels-first copies nothing.
    """
    images = torch.stack(decode_jpeg(jpegs, mode=ImageReadMode.RGB, device=device))
    _, c, h, w = images.shape
    return images.view(samples, len(jpegs) // samples, c, h, w).permute(0, 1, 3, 4, 2)


def split_jpegs(flat: torch.Tensor, offsets: torch.Tensor | np.ndarray) -> list[torch.Tensor]:
    """The packed bytes (shards.assemble.pack_jpegs) as one 1-D view per image, no copies."""
    bounds = [int(o) for o in offsets]
    return [flat[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def decoded_batch(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """A loader batch carrying "jpegs" as one carrying "images" on `device`.

    The reader checked each JPEG's markers and size; a JPEG whose data is still broken fails
    the batched call, so each sample is then decoded alone, and those that fail are dropped
    and counted in bad_samples, as the reader drops what it can't decode.
    """
    batch = dict(batch)
    jpegs = split_jpegs(batch.pop("jpegs"), batch.pop("jpeg_offsets"))
    names = batch.pop("jpeg_names")
    samples = len(names)
    try:
        batch["images"] = decode_images(jpegs, samples, device)
        return batch
    except RuntimeError:
        pass
    per = len(jpegs) // samples
    good, images, errors = [], [], {}
    for i in range(samples):
        try:
            images.append(decode_images(jpegs[i * per : (i + 1) * per], 1, device))
            good.append(i)
        except RuntimeError as exc:
            errors[names[i]] = str(exc).splitlines()[0]
            log.warning("skipping a sample: %s does not decode on %s (%s)", names[i], device,
                        errors[names[i]])  # fmt: skip
    if not good:
        first = next(iter(errors.items()))
        raise ShardSetError(
            f"no sample of a batch decodes on {device} (the first, {first[0]}: {first[1]}); "
            "check the set with `vla-data verify`"
        )
    for name in _PER_SAMPLE:
        if name in batch:
            value = batch[name]
            batch[name] = (
                value[good] if isinstance(value, torch.Tensor) else [value[i] for i in good]
            )
    batch["images"] = torch.cat(images)
    batch["bad_samples"] = [*batch.get("bad_samples", []), *errors]
    return batch


def device_decode_problem(device: torch.device) -> str | None:
    """Why JPEGs can't be decoded on `device` (None when they can): tried on a small image."""
    if device.type != "cuda":
        return f"training on the {device.type.upper()}, not a CUDA GPU"
    probe = encode_jpeg(np.zeros((16, 16, 3), np.uint8), JpegStorage(90))
    try:
        decode_jpeg([torch.frombuffer(bytearray(probe), dtype=torch.uint8)], device=device)
    except (RuntimeError, NotImplementedError) as exc:
        return f"torchvision cannot decode JPEGs on {device} ({str(exc).splitlines()[0]})"
    return None
