"""Training batches from shard sets: epoch order, rank/worker split, shuffle, mixing, decode."""

from __future__ import annotations

import hashlib
import http.client
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from shards.format import SPLITS
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

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class StreamConfig:
    """How one rank reads one split of a shard set."""

    split: str = "train"
    cameras: tuple[str, ...] = ("head", "left_wrist")
    batch_size: int = 8
    # Raw samples (JPEG bytes, ~30 kB for two 224px images) held per stream, not decoded frames.
    shuffle_buffer: int = 1000
    seed: int = 0
    rank: int = 0
    world_size: int = 1
    workers: int = 0  # DataLoader worker processes; 0 reads in the training process
    finite: bool = False  # one unshuffled pass (validation) instead of endless shuffled epochs
    pin_memory: bool = False

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")
        if not self.cameras:
            raise ValueError("at least one camera is needed")
        if self.batch_size < 1 or self.shuffle_buffer < 0 or self.workers < 0 or self.seed < 0:
            raise ValueError("batch_size >= 1, shuffle_buffer >= 0, workers >= 0, seed >= 0")
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is outside world size {self.world_size}")

    @property
    def streams_per_rank(self) -> int:
        return max(self.workers, 1)

    @property
    def streams(self) -> int:
        return self.world_size * self.streams_per_rank


@dataclass(frozen=True)
class StreamPosition:
    """Where one stream stands: set choices drawn, and per set (epoch, raw samples taken).

    Each set's part of a stream runs its own epochs, restarted from (seed, epoch) and
    fast-forwarded by skipping `taken` raw samples undecoded; the set choices restart from
    draw `drawn`. So resume needs no buffer contents on disk.
    """

    drawn: int
    sets: tuple[tuple[int, int], ...]

    @classmethod
    def start(cls, num_sets: int) -> StreamPosition:
        return cls(0, ((0, 0),) * num_sets)

    def to_dict(self) -> dict[str, Any]:
        return {"drawn": self.drawn, "sets": [list(p) for p in self.sets]}

    @classmethod
    def from_dict(cls, data: Any) -> StreamPosition:
        if isinstance(data, list):
            # Saved before mixing: one set's [epoch, taken]. With one set every draw picks
            # set 0, so the draw count does not matter.
            return cls(0, ((int(data[0]), int(data[1])),))
        return cls(int(data["drawn"]), tuple((int(e), int(t)) for e, t in data["sets"]))


@dataclass
class StreamState:
    """What training has consumed: enough to restart every stream exactly where it stopped."""

    positions: dict[int, StreamPosition] = field(default_factory=dict)
    batches: int = 0  # batches consumed: which worker's batch comes next after a restart
    bad_shards: set[str] = field(default_factory=set)
    bad_samples: set[str] = field(default_factory=set)

    def update(self, batch: dict[str, Any]) -> None:
        self.positions[batch["stream"]] = batch["position"]
        self.batches += 1
        self.bad_shards.update(batch["bad_shards"])
        self.bad_samples.update(batch["bad_samples"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "positions": {str(s): p.to_dict() for s, p in sorted(self.positions.items())},
            "batches": self.batches,
            "bad_shards": sorted(self.bad_shards),
            "bad_samples": sorted(self.bad_samples),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StreamState:
        positions = {int(s): StreamPosition.from_dict(p) for s, p in data["positions"].items()}
        return cls(positions, data["batches"], set(data["bad_shards"]), set(data["bad_samples"]))


def stream_shards(
    names: Sequence[str], seed: int, epoch: int, stream: int, streams: int, shuffle: bool = True
) -> list[str]:
    """The shards logical stream `stream` (of `streams`, all ranks x workers) reads in `epoch`.

    The order is reshuffled from (seed, epoch) first and split second, so each stream reads
    other shards every epoch while the streams of one epoch stay disjoint. With fewer shards
    than streams the shuffled order repeats until every stream has one: an empty stream would
    leave its rank waiting forever in the next gradient all-reduce.
    """
    order = list(names)
    if shuffle:
        order = [order[i] for i in np.random.default_rng([seed, epoch]).permutation(len(order))]
        if order and len(order) < streams:
            order = (order * streams)[:streams]
    return order[stream::streams]


def shuffled(items: Iterable[T], size: int, rng: np.random.Generator) -> Iterator[T]:
    """Buffer shuffle: hold `size` items, emit a random one for each new one, then the rest."""
    if size <= 1:
        yield from items
        return
    buffer: list[T] = []
    for item in items:
        if len(buffer) < size:
            buffer.append(item)
            continue
        i = int(rng.integers(size))
        yield buffer[i]
        buffer[i] = item
    rng.shuffle(buffer)
    yield from buffer


def choose_instruction(instructions: Sequence[str], seed: int, epoch: int, key: str) -> str:
    """One instruction per sample per epoch, from a hash: the same on resume, whatever the order."""
    digest = hashlib.blake2b(f"{seed}/{epoch}/{key}".encode(), digest_size=8).digest()
    return instructions[int.from_bytes(digest, "little") % len(instructions)]


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
        # The DataLoader takes batches from workers round-robin starting at worker 0, so after
        # a restart worker w plays the stream whose batch would have come next.
        self.offset = state.batches % cfg.streams_per_rank

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        local = (worker + self.offset) % self.cfg.streams_per_rank
        stream = self.cfg.rank * self.cfg.streams_per_rank + local
        start = StreamPosition.start(len(self.mixture.sets))
        return _stream_batches(self.mixture, self.cfg, stream, self.positions.get(stream, start))


class BatchLoader:
    """Iterates a DataLoader over ShardStream, turning each batch's small arrays into tensors."""

    def __init__(self, loader: DataLoader) -> None:
        self.loader = loader

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for batch in self.loader:
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
            log.warning(
                "%s: %d %s shard(s) for %d ranks x %d workers: some shards are read by several "
                "streams each epoch; write smaller shards for an even mix",
                shard_set.source, len(names), cfg.split, cfg.world_size, cfg.streams_per_rank,
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
    mixture: Mixture, cfg: StreamConfig, stream: int, position: StreamPosition
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
    pending: list[dict[str, Any]] = []
    images = _batch_images(cfg, mixture.sets[0].manifest.image_size)
    for i, (raw, epoch, taken) in draws:
        drawn += 1
        where[i] = (epoch, taken)
        try:
            slot = images[len(pending)].numpy()
            pending.append(_decode(raw, mixture.sets[i], i, cfg, epoch, slot))
        except SampleError as exc:
            log.warning("skipping a sample of %s: %s", raw["__shard__"], exc)
            events.bad_samples.append(f"{raw['__shard__']}/{raw['__key__']}")
        if len(pending) == cfg.batch_size:
            yield _collate(pending, images, stream, StreamPosition(drawn, tuple(where)), events)
            pending = []
            images = _batch_images(cfg, mixture.sets[0].manifest.image_size)
    if pending:  # the end of a single pass
        yield _collate(pending, images, stream, StreamPosition(drawn, tuple(where)), events)


def _batch_images(cfg: StreamConfig, size: int) -> torch.Tensor:
    """A batch's uint8 image tensor; JPEGs are decoded straight into it.

    In a DataLoader worker it is allocated in shared memory: a tensor already shared goes to
    the training process as a handle, where one made with np.stack would be copied into
    shared memory again on its way (with the two stacking copies, 3 copies per image saved).
    """
    images = torch.empty((cfg.batch_size, len(cfg.cameras), size, size, 3), dtype=torch.uint8)
    return images.share_memory_() if get_worker_info() is not None else images


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
            raise ShardSetError(f"{shard_set.source}: stream {stream} can read none of {mine}")
        epoch, skip = epoch + 1, 0


def _raw_samples(
    shard_set: ShardSet, split: str, names: list[str], events: _Events, label: str
) -> Iterator[RawSample]:
    """Raw samples of several shards in turn; a shard that fails is skipped from where it broke."""
    expected = {s.name: s.samples for s in shard_set.manifest.shards(split)}
    cameras = shard_set.manifest.cameras
    for name in names:
        count = 0
        warned = False
        try:
            with shard_set.open_shard(name) as stream:
                for raw in iter_raw_samples(stream, name):
                    raw["__shard__"] = label + name
                    count += 1
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
