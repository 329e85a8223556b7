"""stats.json in and out, in OpenVLA-OFT's dataset_statistics.json layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from common.errors import UserError
from common.files import read_text
from stats.compute import STAT_KEYS, ArrayStats, DatasetStats


class StatsError(UserError):
    """stats.json is missing, unreadable or not in the expected layout."""


def stats_to_json(name: str, stats: DatasetStats) -> str:
    entry: dict = {"action": stats.action.to_dict()}
    if stats.proprio is not None:
        entry["proprio"] = stats.proprio.to_dict()
    entry["num_transitions"] = stats.num_transitions
    entry["num_trajectories"] = stats.num_trajectories
    return entries_to_json({name: entry})


def entries_to_json(entries: dict[str, dict]) -> str:
    """`{DATASET: entry}` for one or several datasets, as OFT's dataset_statistics.json."""
    return json.dumps(entries, indent=2, sort_keys=True) + "\n"


def parse_stats(text: str, source: str) -> dict[str, DatasetStats]:
    """`{DATASET: {...}}` text -> stats per dataset name; `source` names it in errors.

    Statistics that would normalize into NaN or nonsense are refused here, so no reader
    (training, predict, verify, stats) ever uses them.
    """
    try:
        data = json.loads(text)
        stats = {name: _entry(entry) for name, entry in data.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StatsError(f"{source}: not a valid stats file ({exc!r})") from None
    for name, entry in stats.items():
        for quantity in ("action", "proprio"):
            values = getattr(entry, quantity)
            problem = None if values is None else unusable(values, quantity)
            if problem:
                raise StatsError(
                    f"{source}: dataset {name!r}: {problem}; refusing to normalize with it "
                    "(re-convert the set, or restore its stats.json)"
                )
    return stats


def unusable(stats: ArrayStats, quantity: str) -> str | None:
    """What makes `stats` unusable, naming the field and dimension; None when it is sound."""
    dims = len(stats.mean) if stats.mean.ndim == 1 else -1
    for key in STAT_KEYS:
        array = getattr(stats, key)
        if array.ndim != 1:
            return f"{quantity}.{key} is not a list of numbers"
        if len(array) != dims:
            return f"{quantity}.{key} has {len(array)} dims but {quantity}.mean has {dims}"
        bad = np.flatnonzero(~np.isfinite(array))
        if bad.size:
            return f"{quantity}.{key}[{bad[0]}] is {array[bad[0]]}"
    for low, high in (("q01", "q99"), ("min", "max")):
        above = np.flatnonzero(getattr(stats, low) > getattr(stats, high))
        if above.size:
            d = above[0]
            return (
                f"{quantity}.{low}[{d}] = {getattr(stats, low)[d]:g} is above "
                f"{quantity}.{high}[{d}] = {getattr(stats, high)[d]:g}"
            )
    return None


def read_stats(path: Path) -> dict[str, DatasetStats]:
    text = read_text(path, StatsError, "missing; is this a folder made by vla-data convert?")
    return parse_stats(text, str(path))


def write_stats(path: Path, name: str, stats: DatasetStats) -> None:
    path.write_text(stats_to_json(name, stats))


def _entry(entry: dict) -> DatasetStats:
    proprio = entry.get("proprio")
    return DatasetStats(
        action=ArrayStats.from_dict(entry["action"]),
        proprio=ArrayStats.from_dict(proprio) if proprio is not None else None,
        num_transitions=int(entry["num_transitions"]),
        num_trajectories=int(entry["num_trajectories"]),
    )
