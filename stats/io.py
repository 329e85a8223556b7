"""stats.json in and out, in OpenVLA-OFT's dataset_statistics.json layout."""

from __future__ import annotations

import json
from pathlib import Path

from stats.compute import ArrayStats, DatasetStats


class StatsError(Exception):
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
    """`{DATASET: {...}}` text -> stats per dataset name; `source` names it in errors."""
    try:
        data = json.loads(text)
        return {name: _entry(entry) for name, entry in data.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StatsError(f"{source}: not a valid stats file ({exc!r})") from None


def read_stats(path: Path) -> dict[str, DatasetStats]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise StatsError(f"{path}: missing; is this a folder made by vla-data convert?") from None
    except OSError as exc:
        raise StatsError(f"{path}: cannot read ({exc.strerror})") from None
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
