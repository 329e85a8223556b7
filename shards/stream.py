"""The pure parts of reading: stream options, positions for exact resume, shard order, shuffle.

No I/O here: shards.reader runs these in DataLoader workers over real shards.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

import numpy as np

from shards.format import SPLITS

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
    decode_threads: int = 0  # threads decoding each batch's JPEGs (per process); 0: inline
    finite: bool = False  # one unshuffled pass (validation) instead of endless shuffled epochs
    proprio: bool = False  # batches carry each sample's robot state ("proprio" in meta.json)
    # Also decides where workers decode to (shards.buffers): with pinning, a ring of reused
    # shared buffers, since the pinned copy takes the images out anyway; without, a new
    # shared tensor per batch, since taking them out would cost the training process a copy.
    pin_memory: bool = False
    # Batches carry each camera's JPEG bytes, checked but undecoded, for the training device
    # to decode (assemble.PendingBatch: "jpegs", "jpeg_offsets") instead of decoded images.
    jpeg_bytes: bool = False
    # Skip each episode's last chunk-1 samples (their chunks run past the end and are padded),
    # as OpenVLA-OFT's RLDS pipeline does; by default they are read and their padding masked.
    drop_tail: bool = False

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")
        if not self.cameras:
            raise ValueError("at least one camera is needed")
        counts = (self.shuffle_buffer, self.workers, self.decode_threads, self.seed)
        if self.batch_size < 1 or min(counts) < 0:
            raise ValueError(
                "batch_size >= 1; shuffle_buffer, workers, decode_threads and seed >= 0"
            )
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


# A set whose samples fail this many times in a row (or a whole pass over it, if smaller)
# has nothing left to read: going on would loop forever.
MAX_BAD_IN_A_ROW = 1000
# Bad samples a stream warns about one by one; after these, only at 10, 100, 1000, ...
WARN_FIRST_BAD = 3


class BadSamples:
    """One stream's undecodable samples: when to warn, and when a set is beyond reading."""

    def __init__(self, samples_per_set: Sequence[int]) -> None:
        self.limits = [max(1, min(MAX_BAD_IN_A_ROW, n)) for n in samples_per_set]
        self.in_a_row = [0] * len(self.limits)
        self.total = 0

    def good(self, index: int) -> None:
        self.in_a_row[index] = 0

    def bad(self, index: int) -> bool:
        """Count one bad sample of set `index`; True when it is worth a warning line."""
        self.in_a_row[index] += 1
        self.total += 1
        return self.total <= WARN_FIRST_BAD or _is_power_of_ten(self.total)

    def hopeless(self, index: int) -> bool:
        return self.in_a_row[index] >= self.limits[index]


def _is_power_of_ten(n: int) -> bool:
    while n % 10 == 0:
        n //= 10
    return n == 1


class ShardPart(NamedTuple):
    """Samples `part`, `part + parts`, `part + 2 * parts`, ... of shard `name`."""

    name: str
    part: int = 0
    parts: int = 1


def stream_shards(
    names: Sequence[str], seed: int, epoch: int, stream: int, streams: int, shuffle: bool = True
) -> list[ShardPart]:
    """The shards (or parts of shards) logical stream `stream` (of `streams`, all ranks x
    workers) reads in `epoch`.

    The order is reshuffled from (seed, epoch) first and split second, so each stream reads
    other shards every epoch while the streams of one epoch stay disjoint. With fewer shards
    than streams each shard is split into interleaved parts, enough for every stream to get
    one: an empty stream would leave its rank waiting forever in the next gradient
    all-reduce, and reading whole shards twice would show their samples twice per epoch.
    """
    order = list(names)
    if shuffle:
        order = [order[i] for i in np.random.default_rng([seed, epoch]).permutation(len(order))]
    parts = -(-streams // len(order)) if shuffle and order and len(order) < streams else 1
    units = [ShardPart(name, k, parts) for k in range(parts) for name in order]
    return units[stream::streams]


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
