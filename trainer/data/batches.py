"""Device side of the data path: async copy one batch ahead, then float images and actions."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from shards.stream import StreamState
from stats.compute import ArrayStats
from stats.normalize import Bounds, bounds, normalize
from trainer.data.augment import pixel_values
from trainer.data.device_decode import decoded_batch

Tokenize = Callable[[list[str]], dict[str, torch.Tensor]]
_TO_DEVICE = ("images", "actions", "valid", "sets", "proprio")  # proprio: when the run uses it


@dataclass
class DeviceBatch:
    """One model-ready micro-batch on the training device."""

    pixel_values: torch.Tensor  # (B, 6N, 224, 224) float32, normalized per tower
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    actions: torch.Tensor  # (B, CHUNK, D) float32 in [-1, 1] where the stats mask says so
    valid_rows: torch.Tensor  # (B, CHUNK) bool: rows inside the episode
    sets: torch.Tensor  # (B,) int64: each sample's shard set, the index into the mixture
    keys: list[str]
    proprio: torch.Tensor | None = None  # (B, P) float32, normalized like the actions

    @property
    def size(self) -> int:
        return self.actions.shape[0]


class BatchPrep:
    """uint8 images -> (augmented) pixel_values; raw actions -> normalized; all on the device.

    `action_stats` (and `proprio_stats`, for a run that feeds the robot state) have one entry
    per shard set: each sample is normalized with its own set's, the state as OFT does, with
    the same bounds as the actions.
    """

    def __init__(
        self,
        action_stats: Sequence[ArrayStats],
        normalization: str,
        device: torch.device,
        image_aug: bool,
        generator: torch.Generator,
        proprio_stats: Sequence[ArrayStats] | None = None,
    ) -> None:
        self.tensors = _set_bounds(action_stats, normalization, device)  # (num_sets, D) each
        self.proprio = None
        if proprio_stats is not None:
            self.proprio = _set_bounds(proprio_stats, normalization, device)
        self.image_aug = image_aug
        self.generator = generator

    def __call__(self, moved: dict[str, Any], train: bool) -> DeviceBatch:
        chunk = moved["actions"].shape[1]
        rows = torch.arange(chunk, device=moved["actions"].device)
        generator = self.generator if train else None
        return DeviceBatch(
            pixel_values=pixel_values(moved["images"], self.image_aug, generator),
            input_ids=moved["input_ids"],
            attention_mask=moved["attention_mask"],
            actions=normalize(moved["actions"], _pick(self.tensors, moved["sets"], rows=True)),
            valid_rows=rows[None, :] < moved["valid"][:, None],
            sets=moved["sets"],
            keys=moved["keys"],
            proprio=None
            if self.proprio is None
            else normalize(moved["proprio"], _pick(self.proprio, moved["sets"], rows=False)),
        )


def _set_bounds(
    stats: Sequence[ArrayStats], normalization: str, device: torch.device
) -> dict[str, torch.Tensor]:
    per_set = [bounds(s, normalization) for s in stats]
    return {
        name: torch.as_tensor(np.stack([getattr(b, name) for b in per_set]), device=device)
        for name in ("low", "high", "mask", "constant")
    }


def _pick(tensors: dict[str, torch.Tensor], sets: torch.Tensor, rows: bool) -> Bounds:
    """Each sample's own set's bounds: (B, 1, D) against (B, CHUNK, D) actions when `rows`,
    else (B, D) against a (B, D) state."""
    return Bounds(**{name: t[sets, None] if rows else t[sets] for name, t in tensors.items()})


class Prefetcher:
    """Hands out DeviceBatches with the next batch's host-to-device copy already under way.

    On CUDA the copy of batch k+1 runs on a side stream from pinned memory while step k
    computes. `wait_s` accumulates the time spent blocked on the loader (the data wait), and
    `state` counts a batch only when it is handed out, so a checkpoint never skips the one
    that was prefetched but not trained on.
    """

    def __init__(
        self,
        loader: Iterable[dict[str, Any]],
        tokenize: Tokenize,
        prep: BatchPrep,
        device: torch.device,
        state: StreamState | None = None,
        train: bool = True,
    ) -> None:
        self.batches = iter(loader)
        self.tokenize = tokenize
        self.prep = prep
        self.device = device
        self.state = state
        self.train = train
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self.wait_s = 0.0
        self.next = self._load()

    def __iter__(self) -> Iterator[DeviceBatch]:
        return self

    def __next__(self) -> DeviceBatch:
        if self.next is None:
            raise StopIteration
        meta, moved = self.next
        if self.stream is not None:
            current = torch.cuda.current_stream(self.device)
            current.wait_stream(self.stream)
            for value in moved.values():
                if isinstance(value, torch.Tensor):
                    value.record_stream(current)  # memory stays reserved until step k is done
        self.next = self._load()
        if self.state is not None:
            self.state.update(meta)
        return self.prep(moved, self.train)

    def _load(self) -> tuple[dict[str, Any], dict[str, Any]] | None:
        start = time.perf_counter()
        batch = next(self.batches, None)
        if batch is not None and "jpegs" in batch:  # the reader left the JPEGs to the device
            with self._side_stream():
                batch = decoded_batch(batch, self.device)
        # The device's decode is the data path's time too: a step waits for it all the same.
        self.wait_s += time.perf_counter() - start
        if batch is None:
            return None
        tensors = {k: batch[k] for k in _TO_DEVICE if k in batch}
        tensors.update(self.tokenize(batch["instructions"]))
        with self._side_stream():
            moved = {k: v.to(self.device, non_blocking=True) for k, v in tensors.items()}
        moved["keys"] = batch["keys"]
        meta = {k: v for k, v in batch.items() if k not in tensors}
        return meta, moved

    def close(self) -> None:
        """Stop the loader (its workers end): a run that changes loaders mid-way calls it."""
        close = getattr(self.batches, "close", None)
        if close is not None:
            close()

    def _side_stream(self) -> Any:
        return torch.cuda.stream(self.stream) if self.stream is not None else nullcontext()
