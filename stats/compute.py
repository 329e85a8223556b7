"""Action and proprio statistics as OpenVLA-OFT reads them: pure numpy, no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

STAT_KEYS = ("mean", "std", "max", "min", "q01", "q99", "mask")


@dataclass(frozen=True)
class ArrayStats:
    """Per-dimension statistics of one quantity (action or proprio) over every timestep."""

    mean: np.ndarray
    std: np.ndarray
    max: np.ndarray
    min: np.ndarray
    q01: np.ndarray
    q99: np.ndarray
    mask: np.ndarray  # bool: False leaves the dimension unnormalized (e.g. grippers)

    def to_dict(self) -> dict[str, list]:
        return {k: getattr(self, k).tolist() for k in STAT_KEYS}

    @classmethod
    def from_dict(cls, data: dict[str, Sequence]) -> ArrayStats:
        arrays = {k: np.asarray(data[k], dtype=np.float64) for k in STAT_KEYS if k != "mask"}
        dims = len(arrays["mean"])
        mask = np.asarray(data.get("mask", [True] * dims), dtype=bool)
        return cls(mask=mask, **arrays)


@dataclass(frozen=True)
class DatasetStats:
    """The statistics of one dataset: one `{DATASET: {...}}` entry of stats.json."""

    action: ArrayStats
    proprio: ArrayStats | None
    num_transitions: int
    num_trajectories: int


def array_stats(rows: np.ndarray, no_normalize: Sequence[int] = ()) -> ArrayStats:
    """Statistics over all rows (timesteps) of a (N, D) array.

    Quantiles are exact: numpy's linear interpolation over every row, never an average of
    per-episode quantiles. Sums run in float64 so the result does not depend on row order
    beyond the last bits.
    """
    if rows.ndim != 2 or rows.shape[0] == 0:
        raise ValueError(f"need a non-empty (N, D) array, got shape {rows.shape}")
    x = rows.astype(np.float64)
    mask = np.ones(x.shape[1], dtype=bool)
    for dim in no_normalize:
        if not 0 <= dim < x.shape[1]:
            raise ValueError(f"dimension {dim} is out of range for {x.shape[1]}-dim data")
        mask[dim] = False
    q01, q99 = np.quantile(x, [0.01, 0.99], axis=0)
    return ArrayStats(
        mean=x.mean(axis=0),
        std=x.std(axis=0),
        max=x.max(axis=0),
        min=x.min(axis=0),
        q01=q01,
        q99=q99,
        mask=mask,
    )


def dataset_stats(
    actions: Sequence[np.ndarray],
    proprio: Sequence[np.ndarray] | None = None,
    no_normalize: Sequence[int] = (),
) -> DatasetStats:
    """Statistics of a split from its episodes' per-timestep arrays, in episode order."""
    if not actions:
        raise ValueError("no episodes to compute statistics from")
    action_rows = np.concatenate(actions, axis=0)
    proprio_stats = None
    if proprio is not None:
        proprio_stats = array_stats(np.concatenate(proprio, axis=0))
    return DatasetStats(
        action=array_stats(action_rows, no_normalize),
        proprio=proprio_stats,
        num_transitions=int(action_rows.shape[0]),
        num_trajectories=len(actions),
    )
