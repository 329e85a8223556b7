"""Checks of a finished shard set against its own stats.json."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from shards.format import STATS_FILE
from shards.manifest import read_manifest
from shards.samples import RawSample, iter_raw_samples
from stats.io import read_stats
from stats.verify import StatsMismatch, compare, recompute


def iter_split(folder: Path, split: str) -> Iterator[RawSample]:
    for shard in read_manifest(folder).shards(split):
        path = folder / shard.name
        with open(path, "rb") as stream:
            yield from iter_raw_samples(stream, str(path))


def verify_stats(folder: Path) -> list[StatsMismatch]:
    """Recompute stats from every train sample's first action row; list the disagreements."""
    name, expected = next(iter(read_stats(folder / STATS_FILE).items()))
    no_normalize = np.flatnonzero(~expected.action.mask).tolist()
    return compare(expected, recompute(iter_split(folder, "train"), no_normalize))
