"""Checks of a finished shard set against its own stats.json."""

from __future__ import annotations

from pathlib import Path

from shards.format import ACTIONS_MEMBER, META_MEMBER, STATS_FILE, decode_actions, decode_meta
from shards.manifest import read_manifest
from shards.samples import iter_raw_samples
from stats.io import read_stats
from stats.verify import RowCollector, StatsMismatch, compare


def verify_stats(folder: Path) -> list[StatsMismatch]:
    """Recompute stats from every train sample's first action row; list the disagreements."""
    name, expected = next(iter(read_stats(folder / STATS_FILE).items()))
    manifest = read_manifest(folder)
    rows = RowCollector()
    for shard in manifest.shards("train"):
        path = folder / shard.name
        with open(path, "rb") as stream:
            for raw in iter_raw_samples(stream, str(path)):
                rows.add(decode_meta(raw[META_MEMBER]), decode_actions(raw[ACTIONS_MEMBER]))
    # The mask follows the options the set was made with, not stats.json, so an edited mask shows.
    no_normalize = list(manifest.options.get("no_normalize_dims", []))
    return compare(expected, rows.stats(no_normalize))
