"""Training batches from shard sets: one rank's streams, read by DataLoader workers.

The path of a sample from shard to batch, each stage in its own module:
1. stream.stream_shards: which shards (or parts) each stream of each rank reads, per epoch;
2. draw.Draws: their raw samples (tar members, JPEG bytes), buffer-shuffled, the set of
   each sample drawn by weight, and the stream's position for an exact resume;
3. assemble.Decoder: checked and decoded straight into the batch's image buffer
   (buffers.BatchBuffers), in threads if asked; bad samples counted and skipped (with
   StreamConfig.jpeg_bytes, checked only, the JPEGs left for the training device);
4. assemble.PendingBatch: collated, with the position and the bad shards and samples;
5. here, BatchLoader: the batch in the training process, its small arrays as tensors.
The device side (augmentation, normalization, tokens) is trainer.data.batches.
"""

from __future__ import annotations

import atexit
import logging
import signal
import weakref
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from shards.assemble import Decoder, PendingBatch
from shards.buffers import BatchBuffers, FreeFlags
from shards.draw import Draws, Events
from shards.mixture import Mixture
from shards.source import ShardSet, ShardSetError
from shards.stream import StreamConfig, StreamPosition, StreamState

log = logging.getLogger(__name__)


def check_stream(data: ShardSet | Mixture, cfg: StreamConfig) -> None:
    """Fail before any worker starts when a set can't serve this stream."""
    sets = _as_mixture(data).sets
    dims = {s.manifest.proprio_dim for s in sets}
    if cfg.proprio and len(dims) > 1:
        described = ", ".join(f"{s.source}: {s.manifest.proprio_dim or 'none'}" for s in sets)
        raise ShardSetError(
            f"mixed sets must agree on the robot state's size to train with it ({described}); "
            "train without it (--no-proprio), or mix sets that agree"
        )
    for shard_set in sets:
        have = shard_set.manifest.cameras
        lacking = [c for c in cfg.cameras if c not in have]
        if lacking:
            raise ShardSetError(
                f"{shard_set.source}: no camera {', '.join(lacking)} in this set; "
                f"it has {', '.join(have)} (choose with --cameras)"
            )
        if not shard_set.shard_names(cfg.split):
            raise ShardSetError(f"{shard_set.source}: the set has no {cfg.split} shards")
        if cfg.drop_tail:
            _check_full_chunks(shard_set, cfg.split)
        if cfg.proprio and not shard_set.manifest.proprio_dim:
            raise ShardSetError(
                f"{shard_set.source}: its samples carry no robot state (proprio), which this "
                "model takes"
            )


def _check_full_chunks(shard_set: ShardSet, split: str) -> None:
    """Dropping episode tails must leave samples: otherwise the stream would wait forever."""
    chunk = shard_set.manifest.chunk
    steps = [e.steps for e in shard_set.manifest.episodes if e.status == "ok" and e.split == split]
    if steps and max(steps) < chunk:
        raise ShardSetError(
            f"{shard_set.source}: every {split} episode is shorter than the set's {chunk}-step "
            f"chunk (the longest has {max(steps)}), so dropping episode tails leaves nothing to "
            "train on; train with --episode-tail pad, or convert with a shorter --chunk"
        )


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
        ring = cfg.workers and cfg.pin_memory and not cfg.jpeg_bytes  # images, a fixed size
        self.flags = FreeFlags(cfg.workers) if ring else None
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
        buffers = None if self.cfg.jpeg_bytes else BatchBuffers(shape, self.flags, worker)
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
        batches = self._batches()
        _end_at_exit(batches)
        return batches

    def _batches(self) -> Iterator[dict[str, Any]]:
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
                if name in batch:
                    batch[name] = torch.from_numpy(batch[name])
            yield batch


_SMALL_ARRAYS = ("actions", "valid", "sets", "proprio", "jpeg_offsets")
_OPEN: weakref.WeakSet[Iterator[dict[str, Any]]] = weakref.WeakSet()


def _end_at_exit(batches: Iterator[dict[str, Any]]) -> None:
    """Have `batches` closed at interpreter exit, should it still be open then.

    At exit, multiprocessing ends a DataLoader's workers with SIGTERM and waits for them,
    and the workers ignore SIGTERM (_leave_stops_to_the_parent): a script that exits with
    an iterator still open, in a global say, would wait forever. Closed first (this hook
    is registered after multiprocessing's and torch's, so it runs before them), the
    iterator drops its DataLoader iterator, which tells its workers to stop and joins them.
    """
    if not _OPEN:
        atexit.unregister(_close_open)  # never twice, however many loaders come and go
        atexit.register(_close_open)
    _OPEN.add(batches)


def _close_open() -> None:
    for batches in list(_OPEN):
        try:
            batches.close()
        except Exception as exc:  # exiting anyway: say so, and let the others close
            log.warning("closing a loader at exit: %s", exc)


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
        worker_init_fn=_leave_stops_to_the_parent,
    )
    return BatchLoader(loader)


def _leave_stops_to_the_parent(worker: int) -> None:
    """Ctrl-C reaches every process of the terminal's group, a scheduler's SIGTERM every
    process of the job: the training process decides when to stop and ends its workers
    itself, so a worker takes neither as its own (no KeyboardInterrupt traceback mid-decode)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _stream_batches(
    mixture: Mixture,
    cfg: StreamConfig,
    stream: int,
    position: StreamPosition,
    buffers: BatchBuffers | None,
) -> Iterator[dict[str, Any]]:
    """One stream's batches: draw what the batch lacks, decode it, keep what decodes, emit."""
    events = Events()
    draws = Draws(mixture, cfg, stream, position, events)
    batch = PendingBatch(cfg.batch_size, buffers)
    decoder = Decoder(mixture, cfg, events)
    try:
        while True:
            missing = batch.missing
            jobs = draws.take(missing)
            batch.keep(decoder.decode(jobs, batch.slots(len(jobs))))
            exhausted = len(jobs) < missing  # only a single pass ends
            if batch.missing == 0 or (exhausted and batch.samples):
                yield batch.emit(stream, draws.position(), events)
            if exhausted:
                return
    finally:
        decoder.close()
