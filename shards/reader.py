"""Training batches from shard sets: epoch order, rank/worker split, shuffle, mixing, decode."""

from __future__ import annotations

import http.client
import itertools
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from shards.buffers import BatchBuffers, FreeFlags
from shards.mixture import Mixture, set_choices
from shards.samples import (
    RawSample,
    SampleError,
    ShardReadError,
    decode_sample,
    extra_fields,
    iter_raw_samples,
)
from shards.source import ShardSet, ShardSetError
from shards.stream import (
    WARN_FIRST_BAD,
    BadSamples,
    ShardPart,
    StreamConfig,
    StreamPosition,
    StreamState,
    choose_instruction,
    shuffled,
    stream_shards,
)

log = logging.getLogger(__name__)


def check_stream(data: ShardSet | Mixture, cfg: StreamConfig) -> None:
    """Fail before any worker starts when a set can't serve this stream."""
    for shard_set in _as_mixture(data).sets:
        have = shard_set.manifest.cameras
        lacking = [c for c in cfg.cameras if c not in have]
        if lacking:
            raise ShardSetError(
                f"{shard_set.source}: no camera {', '.join(lacking)} in this set; "
                f"it has {', '.join(have)} (choose with --images)"
            )
        if not shard_set.shard_names(cfg.split):
            raise ShardSetError(f"{shard_set.source}: the set has no {cfg.split} shards")


def _as_mixture(data: ShardSet | Mixture) -> Mixture:
    return data if isinstance(data, Mixture) else Mixture.of(data)


class ShardStream(IterableDataset):
    """One rank's endless (or, for validation, single-pass) stream of collated uint8 batches.

    Training draws each sample's set by weight; a single pass reads the sets one after another.
    """

    def __init__(self, mixture: Mixture, cfg: StreamConfig, state: StreamState | None = None):
        check_stream(mixture, cfg)
        self.mixture = mixture
        self.cfg = cfg
        state = state or StreamState()
        self.positions = dict(state.positions)
        self.flags = FreeFlags(cfg.workers) if cfg.workers and cfg.pin_memory else None
        # The DataLoader takes batches from workers round-robin starting at worker 0, so after
        # a restart worker w plays the stream whose batch would have come next.
        self.offset = state.batches % cfg.streams_per_rank

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        local = (worker + self.offset) % self.cfg.streams_per_rank
        stream = self.cfg.rank * self.cfg.streams_per_rank + local
        start = StreamPosition.start(len(self.mixture.sets))
        size = self.mixture.sets[0].manifest.image_size
        shape = (self.cfg.batch_size, len(self.cfg.cameras), size, size, 3)
        if self.flags is not None:
            self.flags.reset(worker)
        buffers = BatchBuffers(shape, self.flags, worker)
        position = self.positions.get(stream, start)
        batches = _stream_batches(self.mixture, self.cfg, stream, position, buffers)
        return _errors_as_batches(batches)


def _errors_as_batches(batches: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """A set that can't be read ends the stream with an {"error": message} batch.

    Raised in a DataLoader worker, the error would reach the training process re-raised
    with the worker's traceback in its message; as a batch it arrives as the one line it is.
    """
    try:
        yield from batches
    except ShardSetError as exc:
        yield {"error": str(exc)}


class BatchLoader:
    """Iterates a DataLoader over ShardStream, turning each batch's small arrays into tensors.

    A batch decoded into a worker's reused buffer is taken out of it here (the pinned copy
    already did that on CUDA) and the buffer handed back, so the batch is the caller's to keep.
    """

    def __init__(self, loader: DataLoader) -> None:
        self.loader = loader
        self.flags: FreeFlags | None = loader.dataset.flags
        # Holding each worker's ring keeps it mapped here: mapped again per batch, its pages
        # would fault in anew each time.
        self.rings: dict[int, torch.UntypedStorage] = {}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for batch in self.loader:
            if "error" in batch:
                raise ShardSetError(batch["error"])
            buffer = batch.pop("buffer", None)
            if buffer is not None and self.flags is not None:
                images = batch["images"]
                if not images.is_pinned():
                    self.rings[buffer[0]] = images.untyped_storage()
                    batch["images"] = images.clone()
                self.flags.release(*buffer)
            for name in _SMALL_ARRAYS:
                batch[name] = torch.from_numpy(batch[name])
            yield batch


_SMALL_ARRAYS = ("actions", "valid", "sets")


def _as_built(batch: dict[str, Any]) -> dict[str, Any]:
    return batch


def make_loader(
    data: ShardSet | Mixture, cfg: StreamConfig, state: StreamState | None = None
) -> BatchLoader:
    """A DataLoader over ShardStream: decoding and collation run in its workers."""
    mixture = _as_mixture(data)
    for shard_set in mixture.sets:
        names = shard_set.shard_names(cfg.split)
        if not cfg.finite and len(names) < cfg.streams:
            # Each stream still reads its shards whole to take its part: more bytes read.
            log.info(
                "%s: %d %s shard(s) for %d ranks x %d workers: each shard is shared by up to "
                "%d streams, each taking every %d-th sample",
                shard_set.source, len(names), cfg.split, cfg.world_size, cfg.streams_per_rank,
                -(-cfg.streams // len(names)), -(-cfg.streams // len(names)),
            )  # fmt: skip
    loader = DataLoader(
        ShardStream(mixture, cfg, state),
        batch_size=None,
        collate_fn=_as_built,  # batches come collated; the default would make numpy tensors
        num_workers=cfg.workers,
        pin_memory=cfg.pin_memory,
        prefetch_factor=2 if cfg.workers else None,
    )
    return BatchLoader(loader)


@dataclass
class _Events:
    """Bad shards and samples met since the last batch; they ride along with the next one."""

    bad_shards: list[str] = field(default_factory=list)
    bad_samples: list[str] = field(default_factory=list)

    def drain(self) -> dict[str, list[str]]:
        out = {"bad_shards": self.bad_shards, "bad_samples": self.bad_samples}
        self.bad_shards, self.bad_samples = [], []
        return out


def _stream_batches(
    mixture: Mixture,
    cfg: StreamConfig,
    stream: int,
    position: StreamPosition,
    buffers: BatchBuffers,
) -> Iterator[dict[str, Any]]:
    events = _Events()
    # Shard names repeat across sets: a mixture reports bad ones under their dataset's name.
    labels = [f"{n}/" if len(mixture.sets) > 1 else "" for n in mixture.datasets]
    where = list(position.sets)
    parts = [
        _set_raws(shard_set, i, cfg, stream, *where[i], events, labels[i])
        for i, shard_set in enumerate(mixture.sets)
    ]
    if cfg.finite:
        draws = ((i, item) for i, part in enumerate(parts) for item in part)
    else:
        choices = set_choices(mixture.weights, cfg.seed, stream, position.drawn)
        draws = ((i, next(parts[i])) for i in choices)  # training parts never end
    drawn = position.drawn
    bad = BadSamples([s.manifest.samples(cfg.split) for s in mixture.sets])
    # simplejpeg releases the GIL, so decode threads run in parallel with no IPC at all.
    pool = ThreadPoolExecutor(cfg.decode_threads) if cfg.decode_threads else None
    try:
        pending: list[dict[str, Any]] = []
        images, slot = None, None  # taken when a batch's first sample is ready to decode
        exhausted = False
        while not exhausted:
            # Draw what the batch lacks, decode it (in parallel), keep what decodes.
            jobs = []
            for i, (raw, epoch, taken) in itertools.islice(draws, cfg.batch_size - len(pending)):
                drawn += 1
                where[i] = (epoch, taken)
                jobs.append((raw, i, epoch))
            exhausted = len(jobs) < cfg.batch_size - len(pending)
            if jobs and images is None:
                images, slot = buffers.take()
            start = len(pending)
            slots = [images[start + k].numpy() for k in range(len(jobs))]
            for k, result in enumerate(_decode_all(jobs, mixture, cfg, slots, pool)):
                raw, i, _ = jobs[k]
                if isinstance(result, SampleError):
                    events.bad_samples.append(f"{raw['__shard__']}/{raw['__key__']}")
                    _bad_sample(bad, i, mixture.sets[i], cfg.split, raw, result)
                    continue
                bad.good(i)
                if start + k != len(pending):  # close the gap a skipped sample left
                    images[len(pending)] = images[start + k]
                pending.append(result)
            if len(pending) == cfg.batch_size or (exhausted and pending):
                position_now = StreamPosition(drawn, tuple(where))
                batch = _collate(pending, images, stream, position_now, events)
                if slot is not None:
                    batch["buffer"] = (buffers.worker, slot)
                yield batch
                pending, images, slot = [], None, None
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def _bad_sample(
    bad: BadSamples, index: int, shard_set: ShardSet, split: str, raw: RawSample, exc: SampleError
) -> None:
    """Count (and now and then report) an undecodable sample; stop on a set beyond reading."""
    if bad.bad(index):
        # Rate-limited: every bad sample is still counted in the batch's bad_samples.
        log.warning(
            "skipping a sample of %s: %s (%d bad samples so far in this stream; the first %d "
            "are logged, then the 10th, 100th, 1000th, ...)",
            raw["__shard__"], exc, bad.total, WARN_FIRST_BAD,
        )  # fmt: skip
    if bad.hopeless(index):
        raise ShardSetError(
            f"{shard_set.source}: {bad.in_a_row[index]} {split} samples in a row did not "
            f"decode, the last: {exc}; check the set with `vla-data verify {shard_set.source}`"
        )


def _decode_all(
    jobs: list[tuple[RawSample, int, int]],
    mixture: Mixture,
    cfg: StreamConfig,
    slots: list[np.ndarray],
    pool: ThreadPoolExecutor | None,
) -> list[dict[str, Any] | SampleError]:
    """_decode of each job into its slot, in job order; a SampleError stands for a bad one."""

    def one(k: int) -> dict[str, Any] | SampleError:
        raw, i, epoch = jobs[k]
        try:
            return _decode(raw, mixture.sets[i], i, cfg, epoch, slots[k])
        except SampleError as exc:
            return exc

    if pool is None:
        return [one(k) for k in range(len(jobs))]
    return list(pool.map(one, range(len(jobs))))


def _set_raws(
    shard_set: ShardSet,
    index: int,
    cfg: StreamConfig,
    stream: int,
    epoch: int,
    skip: int,
    events: _Events,
    label: str,
) -> Iterator[tuple[RawSample, int, int]]:
    """One set's raw samples for `stream`, each with (epoch, taken): endless unless finite."""
    while True:
        names = shard_set.shard_names(cfg.split)
        mine = stream_shards(names, cfg.seed, epoch, stream, cfg.streams, not cfg.finite)
        # SeedSequence pads keys with zeros, so set 0 shuffles exactly as single-set runs
        # (seeded [seed, epoch, stream]) always have, and their checkpoints resume as before.
        rng = np.random.default_rng([cfg.seed, epoch, stream, index])
        raws = _raw_samples(shard_set, cfg.split, mine, events, label)
        taken = 0
        for raw in shuffled(raws, 0 if cfg.finite else cfg.shuffle_buffer, rng):
            taken += 1
            if taken > skip:  # fast-forward on resume: no JPEG decoding
                yield raw, epoch, taken
        if cfg.finite:
            return
        if taken == 0 and mine:
            names_read = [unit.name for unit in mine]
            raise ShardSetError(
                f"{shard_set.source}: stream {stream} can read none of {names_read}"
            )
        epoch, skip = epoch + 1, 0


def _raw_samples(
    shard_set: ShardSet, split: str, units: list[ShardPart], events: _Events, label: str
) -> Iterator[RawSample]:
    """Raw samples of several shards (or their parts) in turn; a shard that fails is skipped
    from where it broke."""
    expected = {s.name: s.samples for s in shard_set.manifest.shards(split)}
    cameras = shard_set.manifest.cameras
    for name, part, parts in units:
        count = 0
        warned = False
        try:
            with shard_set.open_shard(name) as stream:
                for raw in iter_raw_samples(stream, name):
                    count += 1
                    if (count - 1) % parts != part:
                        continue  # another stream's part of this shard
                    raw["__shard__"] = label + name
                    extras = extra_fields(raw, cameras)
                    if extras and not warned:
                        # Shards from elsewhere are data: such members are never decoded.
                        log.warning(
                            "%s: ignoring member(s) %s, not part of the vla-shards contract",
                            shard_set.location(name), ", ".join(extras),
                        )  # fmt: skip
                        warned = True
                    yield raw
            # A tar cut at a block boundary reads as a clean end: the manifest's count tells.
            if count < expected[name]:
                raise ShardReadError(f"{name}: ended after {count} of {expected[name]} samples")
        except (ShardReadError, OSError, http.client.HTTPException) as exc:
            log.warning("skipping the rest of shard %s: %s", shard_set.location(name), exc)
            events.bad_shards.append(label + name)


def _decode(
    raw: RawSample,
    shard_set: ShardSet,
    index: int,
    cfg: StreamConfig,
    epoch: int,
    images: np.ndarray,
) -> dict[str, Any]:
    """Check and decode one sample; its images land in `images` (N, H, W, 3)."""
    manifest = shard_set.manifest
    if images.shape[1] != manifest.image_size:
        # Mixed sets agree on image size (checked at start); this guards a lying manifest.
        raise SampleError(f"sample {raw['__key__']}: set image size {manifest.image_size}")
    sample = decode_sample(raw, cfg.cameras, images)
    actions = sample["actions"]
    if actions.shape != (manifest.chunk, manifest.action_dim):
        raise SampleError(f"sample {sample['key']}: actions are {actions.shape}")
    meta = sample["meta"]
    instructions = meta.get("instructions")
    valid = meta.get("valid")
    if not instructions or not isinstance(valid, int) or not 1 <= valid <= manifest.chunk:
        raise SampleError(f"sample {sample['key']}: meta.json lacks instructions or valid")
    return {
        "key": sample["key"],
        "actions": actions,
        "valid": valid,
        "instruction": choose_instruction(instructions, cfg.seed, epoch, sample["key"]),
        "set": index,
    }


def _collate(
    samples: list[dict[str, Any]],
    images: torch.Tensor,
    stream: int,
    position: StreamPosition,
    events: _Events,
) -> dict[str, Any]:
    return {
        "images": images[: len(samples)],  # (B, N, H, W, 3), decoded in place
        # Small arrays stay numpy until the training process (BatchLoader): a tensor crosses
        # from a worker through its own shared-memory segment and file-descriptor hand-over,
        # which for a few hundred bytes costs far more than pickling them.
        "actions": np.stack([s["actions"] for s in samples]),
        "valid": np.array([s["valid"] for s in samples], dtype=np.int64),
        "instructions": [s["instruction"] for s in samples],
        "keys": [s["key"] for s in samples],
        "sets": np.array([s["set"] for s in samples], dtype=np.int64),  # index in mixture
        "stream": stream,
        "position": position,
        **events.drain(),
    }
