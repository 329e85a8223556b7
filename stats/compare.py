"""Recompute a shard set's statistics from its train samples and compare with its stats.json."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from stats.compute import STAT_KEYS, ArrayStats, DatasetStats, dataset_stats

# Means and stds are sums in another order than at conversion time (samples are shuffled);
# extremes and quantiles depend only on the multiset of values, so they must match exactly.
_SUM_RTOL = 1e-6


@dataclass(frozen=True)
class StatsMismatch:
    quantity: str  # "action" | "proprio" | "counts"
    key: str
    detail: str


@dataclass
class RowCollector:
    """Per-episode rows seen in samples: the first action row of a sample is the action at t."""

    actions: dict[str, list[np.ndarray]] = field(default_factory=dict)
    proprio: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def add(self, meta: dict, actions: np.ndarray) -> None:
        self.actions.setdefault(meta["episode"], []).append(actions[0])
        if "proprio" in meta:
            row = np.asarray(meta["proprio"], np.float32)
            self.proprio.setdefault(meta["episode"], []).append(row)

    def merge(self, other: RowCollector) -> None:
        for mine, theirs in ((self.actions, other.actions), (self.proprio, other.proprio)):
            for episode, rows in theirs.items():
                mine.setdefault(episode, []).extend(rows)

    def stats(self, no_normalize: list[int]) -> DatasetStats:
        if not self.actions:
            raise ValueError("no train samples to recompute statistics from")
        episodes = sorted(self.actions)
        return dataset_stats(
            [np.stack(self.actions[e]) for e in episodes],
            [np.stack(self.proprio[e]) for e in episodes] if self.proprio else None,
            no_normalize,
        )


def compare(expected: DatasetStats, actual: DatasetStats) -> list[StatsMismatch]:
    problems = []
    for name in ("num_transitions", "num_trajectories"):
        if getattr(expected, name) != getattr(actual, name):
            detail = f"stats.json {getattr(expected, name)}, samples {getattr(actual, name)}"
            problems.append(StatsMismatch("counts", name, detail))
    problems += _compare_arrays("action", expected.action, actual.action)
    if (expected.proprio is None) != (actual.proprio is None):
        problems.append(StatsMismatch("proprio", "presence", "stats.json and samples disagree"))
    elif expected.proprio is not None:
        problems += _compare_arrays("proprio", expected.proprio, actual.proprio)
    return problems


def _compare_arrays(quantity: str, expected: ArrayStats, actual: ArrayStats) -> list[StatsMismatch]:
    problems = []
    for key in STAT_KEYS:
        want, got = getattr(expected, key), getattr(actual, key)
        if np.shape(want) != np.shape(got):
            detail = f"shape {np.shape(want)} vs {np.shape(got)}"
            problems.append(StatsMismatch(quantity, key, detail))
            continue
        if key in ("mean", "std"):
            same = np.allclose(want, got, rtol=_SUM_RTOL, atol=1e-9)
        else:
            same = np.array_equal(want, got)
        if not same:
            dim = int(np.argmax(np.abs(np.asarray(want, float) - np.asarray(got, float))))
            detail = f"dim {dim}: stats.json {float(want[dim])!r}, samples {float(got[dim])!r}"
            problems.append(StatsMismatch(quantity, key, detail))
    return problems
