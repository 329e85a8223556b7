"""Several shard sets read as one: SOURCE:WEIGHT specs, agreement checks, the seeded set choice."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from shards.source import ShardSet, ShardSetError, open_shard_set
from stats.io import entries_to_json

# What every set of a mixture must share: one action head, one batch layout.
AGREED_FIELDS = ("chunk", "action_dim", "image_size")
# `https://host:8080` ends in a port, not a weight (the host part holds no ':' but in [IPv6]).
_URL_PORT = re.compile(r"https?://(\[[^\]]*\]|[^/:\[]*):\d+")
# Choices are drawn in seeded blocks, so a resume jumps to draw k without replaying 0..k-1.
_CHOICE_BLOCK = 4096
# Ends the choice seeds; no set index reaches it, so they never equal a set's shuffle seed.
_CHOICE_KEY = 2**32 - 1


def parse_source(spec: str) -> tuple[str, float]:
    """`SOURCE` or `SOURCE:WEIGHT` -> (source, weight), weight 1.0 when none is given.

    Only a trailing `:<number>` is a weight, and not an http(s) URL's port: `https://h:8080`
    has none, `https://h:8080/sets/a/:0.5` and `s3://bucket/a/:2` have one.
    """
    head, sep, tail = spec.rpartition(":")
    if not sep or not head or _URL_PORT.fullmatch(spec):
        return spec, 1.0
    try:
        weight = float(tail)
    except ValueError:
        return spec, 1.0
    if not (math.isfinite(weight) and weight > 0):
        raise ValueError(f"{spec}: the weight after the last ':' must be a number above 0")
    return head, weight


@dataclass(frozen=True)
class Mixture:
    """Shard sets read together: each sample comes from set i with probability weights[i]/sum.

    A set's index in `sets` is what batches carry to pick its statistics.
    """

    sets: tuple[ShardSet, ...]
    weights: tuple[float, ...]

    @classmethod
    def of(cls, shard_set: ShardSet) -> Mixture:
        return cls((shard_set,), (1.0,))

    @property
    def chunk(self) -> int:
        return self.sets[0].manifest.chunk  # the same in every set (open_mixture checks)

    @property
    def action_dim(self) -> int:
        return self.sets[0].manifest.action_dim

    @property
    def datasets(self) -> list[str]:
        return [s.manifest.dataset for s in self.sets]

    def record(self) -> list[dict[str, Any]]:
        """Which dataset came from where with which weight, for train_config.json."""
        return [
            {"dataset": s.manifest.dataset, "source": s.source, "weight": w}
            for s, w in zip(self.sets, self.weights, strict=True)
        ]

    def stats_text(self) -> str:
        """One stats.json with every set's own entry: inference denormalizes per dataset."""
        entries = {
            s.manifest.dataset: json.loads(s.stats_text)[s.manifest.dataset] for s in self.sets
        }
        return entries_to_json(entries)


def open_mixture(specs: Sequence[tuple[str, float]]) -> Mixture:
    """Open every (source, weight) and check that the sets can share one model and batch."""
    sets = tuple(open_shard_set(source) for source, _ in specs)
    first = sets[0]
    for i, shard_set in enumerate(sets[1:], 1):
        for name in AGREED_FIELDS:
            mine, theirs = getattr(shard_set.manifest, name), getattr(first.manifest, name)
            if mine != theirs:
                raise ShardSetError(
                    f"{shard_set.source} has {name} {mine} but {first.source} has {theirs}; "
                    f"mixed shard sets must agree on {', '.join(AGREED_FIELDS)}"
                )
        for other in sets[:i]:
            _check_distinct(other, shard_set)
    return Mixture(sets, tuple(weight for _, weight in specs))


def _check_distinct(a: ShardSet, b: ShardSet) -> None:
    # A checkpoint's stats.json keys entries by dataset name, so two sets can't share one.
    if a.source == b.source:
        raise ShardSetError(f"{a.source} is given twice in --shards; give it once with a weight")
    if a.manifest.dataset == b.manifest.dataset:
        raise ShardSetError(
            f"{a.source} and {b.source} are both dataset {a.manifest.dataset!r}; mixed sets "
            "need distinct dataset names (a set's statistics are stored under its name)"
        )


def set_choices(weights: Sequence[float], seed: int, stream: int, start: int) -> Iterator[int]:
    """The set each draw of `stream` reads from, from draw `start` on: seeded, so resumable."""
    cdf = np.cumsum(weights)
    block, offset = divmod(start, _CHOICE_BLOCK)
    while True:
        rng = np.random.default_rng([seed, stream, block, _CHOICE_KEY])
        u = rng.random(_CHOICE_BLOCK)[offset:] * cdf[-1]
        # min(): u * total can round up to total itself.
        yield from np.minimum(np.searchsorted(cdf, u, side="right"), len(cdf) - 1).tolist()
        block, offset = block + 1, 0
