"""Which raw samples one stream reads, in order, and where it stands for an exact resume.

Stages, for each set of the mixture: its shards (or parts of shards) for this stream and
epoch (stream.stream_shards) -> their raw samples, still JPEG bytes (read_shards) -> the
seeded buffer shuffle (stream.shuffled) -> skipping what a resumed stream already took.
Then across sets: the seeded choice of a set per sample (mixture.set_choices), or, for a
single pass, the sets one after another.
"""

from __future__ import annotations

import http.client
import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from shards.format import META_MEMBER, decode_meta
from shards.mixture import Mixture, set_choices
from shards.samples import RawSample, ShardReadError, extra_fields, iter_raw_samples
from shards.source import ShardSet, ShardSetError
from shards.stream import ShardPart, StreamConfig, StreamPosition, shuffled, stream_shards

log = logging.getLogger(__name__)

Job = tuple[RawSample, int, int]  # a raw sample, its set's index in the mixture, its epoch


@dataclass
class Events:
    """Bad shards and samples met since the last batch; they ride along with the next one."""

    bad_shards: list[str] = field(default_factory=list)
    bad_samples: list[str] = field(default_factory=list)

    def drain(self) -> dict[str, list[str]]:
        out = {"bad_shards": self.bad_shards, "bad_samples": self.bad_samples}
        self.bad_shards, self.bad_samples = [], []
        return out


class Draws:
    """One stream's raw samples in training order, and its position after those drawn.

    Each set's part restarts from (seed, epoch) and skips the raw samples it had taken, and
    the set choices restart from draw `drawn`: a position is all a resume needs.
    """

    def __init__(
        self,
        mixture: Mixture,
        cfg: StreamConfig,
        stream: int,
        position: StreamPosition,
        events: Events,
    ) -> None:
        self.mixture, self.cfg, self.stream, self.events = mixture, cfg, stream, events
        self.drawn = position.drawn
        self.where = list(position.sets)  # per set: (epoch, raw samples taken)
        # Shard names repeat across sets: a mixture reports bad ones under their dataset's name.
        single = len(mixture.sets) == 1
        self.labels = ["" if single else f"{name}/" for name in mixture.datasets]
        parts = [self._set_raws(i, *self.where[i]) for i in range(len(mixture.sets))]
        if cfg.finite:
            self.draws = ((i, item) for i, part in enumerate(parts) for item in part)
        else:
            choices = set_choices(mixture.weights, cfg.seed, stream, position.drawn)
            self.draws = ((i, next(parts[i])) for i in choices)  # training parts never end

    def take(self, n: int) -> list[Job]:
        """The next `n` samples (fewer only at the end of a single pass)."""
        jobs = []
        for i, (raw, epoch, taken) in itertools.islice(self.draws, n):
            self.drawn += 1
            self.where[i] = (epoch, taken)
            jobs.append((raw, i, epoch))
        return jobs

    def position(self) -> StreamPosition:
        return StreamPosition(self.drawn, tuple(self.where))

    def _set_raws(self, index: int, epoch: int, skip: int) -> Iterator[tuple[RawSample, int, int]]:
        """One set's raw samples for this stream, each with (epoch, taken): endless unless
        finite."""
        cfg, stream, shard_set = self.cfg, self.stream, self.mixture.sets[index]
        while True:
            names = shard_set.shard_names(cfg.split)
            mine = stream_shards(names, cfg.seed, epoch, stream, cfg.streams, not cfg.finite)
            # SeedSequence pads keys with zeros, so set 0 shuffles exactly as single-set runs
            # (seeded [seed, epoch, stream]) always have, and their checkpoints resume as before.
            rng = np.random.default_rng([cfg.seed, epoch, stream, index])
            raws = read_shards(shard_set, cfg.split, mine, self.events, self.labels[index])
            taken = 0
            chunk = shard_set.manifest.chunk
            for raw in shuffled(raws, 0 if cfg.finite else cfg.shuffle_buffer, rng):
                taken += 1  # tails dropped count too, so a resume fast-forwards to the same place
                if taken > skip and not (cfg.drop_tail and _is_tail(raw, chunk)):
                    yield raw, epoch, taken  # skip: fast-forward on resume, no JPEG decoding
            if cfg.finite:
                return
            if taken == 0 and mine:
                names_read = [unit.name for unit in mine]
                raise ShardSetError(
                    f"{shard_set.source}: stream {stream} can read none of {names_read}"
                )
            epoch, skip = epoch + 1, 0


def _is_tail(raw: RawSample, chunk: int) -> bool:
    """A sample whose chunk runs past its episode's end; unreadable meta is decoding's to report."""
    try:
        valid = decode_meta(raw[META_MEMBER]).get("valid")
    except (KeyError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(valid, int) and valid < chunk


def read_shards(
    shard_set: ShardSet, split: str, units: list[ShardPart], events: Events, label: str
) -> Iterator[RawSample]:
    """Raw samples of several shards (or their parts) in turn; a shard that fails is skipped
    from where it broke, and reported in `events`."""
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
