"""Read a finished shard set's train rows back, and check its stats.json against them."""

from __future__ import annotations

from pathlib import Path

from shards.format import ACTIONS_MEMBER, META_MEMBER, STATS_FILE, decode_actions, decode_meta
from shards.manifest import read_manifest
from shards.samples import iter_raw_samples
from stats.io import read_stats
from stats.verify import RowCollector, StatsMismatch, compare


def train_rows(folder: Path) -> RowCollector:
    """Every train timestep's action (each sample's first row) and proprio, per episode."""
    rows = RowCollector()
    for shard in read_manifest(folder).shards("train"):
        path = folder / shard.name
        with open(path, "rb") as stream:
            for raw in iter_raw_samples(stream, str(path)):
                rows.add(decode_meta(raw[META_MEMBER]), decode_actions(raw[ACTIONS_MEMBER]))
    return rows


def verify_stats(folder: Path, rows: RowCollector | None = None) -> list[StatsMismatch]:
    """Recompute stats from every train sample's first action row; list the disagreements.

    `rows` are the set's train_rows when the caller has read them already.
    """
    name, expected = next(iter(read_stats(folder / STATS_FILE).items()))
    # The mask follows the options the set was made with, not stats.json, so an edited mask shows.
    no_normalize = list(read_manifest(folder).options.get("no_normalize_dims", []))
    rows = rows if rows is not None else train_rows(folder)
    return compare(expected, rows.stats(no_normalize))
