"""Recompute a shard set's statistics from its train samples and compare with its stats.json."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from shards.format import ACTIONS_MEMBER, META_MEMBER, decode_actions, decode_meta
from shards.samples import RawSample
from stats.compute import STAT_KEYS, ArrayStats, DatasetStats, dataset_stats

# Means and stds are sums in another order than at conversion time (samples are shuffled);
# extremes and quantiles depend only on the multiset of values, so they must match exactly.
_SUM_RTOL = 1e-6


@dataclass(frozen=True)
class StatsMismatch:
    quantity: str  # "action" | "proprio" | "counts"
    key: str
    detail: str


def recompute(samples: Iterable[RawSample], no_normalize: Iterable[int]) -> DatasetStats:
    """Stats over the first action row (= the action at t) of every sample, grouped by episode."""
    actions: dict[str, list[np.ndarray]] = {}
    proprio: dict[str, list[np.ndarray]] = {}
    for raw in samples:
        meta = decode_meta(raw[META_MEMBER])
        actions.setdefault(meta["episode"], []).append(decode_actions(raw[ACTIONS_MEMBER])[0])
        if "proprio" in meta:
            proprio.setdefault(meta["episode"], []).append(np.asarray(meta["proprio"], np.float32))
    if not actions:
        raise ValueError("no train samples to recompute statistics from")
    episodes = sorted(actions)
    return dataset_stats(
        [np.stack(actions[e]) for e in episodes],
        [np.stack(proprio[e]) for e in episodes] if proprio else None,
        list(no_normalize),
    )


def compare(expected: DatasetStats, actual: DatasetStats) -> list[StatsMismatch]:
    problems = []
    for field in ("num_transitions", "num_trajectories"):
        if getattr(expected, field) != getattr(actual, field):
            detail = f"stats.json {getattr(expected, field)}, samples {getattr(actual, field)}"
            problems.append(StatsMismatch("counts", field, detail))
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
            detail = f"dim {dim}: stats.json {want[dim]!r}, samples {got[dim]!r}"
            problems.append(StatsMismatch(quantity, key, detail))
    return problems
