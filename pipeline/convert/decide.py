"""The choices of stage 2 that are made for the many: action and proprio width, cameras,
sample keys and the train/val split. Each choice that leaves episodes or cameras out
says so in the plan's decisions; none is made by whichever file sorts first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from common.errors import ConfigError
from pipeline.config import PlanConfig
from pipeline.convert.plan import EpisodeProbe
from pipeline.inputs.cameras import canonical_order
from shards.format import episode_key


def split_counts(n_good: int, val_episodes: float | int) -> int:
    """Episodes for val: a count, or a fraction (at least one once there are 20 or more)."""
    if isinstance(val_episodes, int):
        n_val = val_episodes
    else:
        n_val = int(n_good * val_episodes)
        if val_episodes > 0 and n_good >= 20:
            n_val = max(1, n_val)
    if n_val >= n_good > 0:
        raise ConfigError(
            f"--val-episodes {val_episodes} leaves no training episodes out of {n_good} good ones"
        )
    return n_val


def check_no_normalize_dims(probes: list[EpisodeProbe], dims: tuple[int, ...]) -> None:
    """Checked once the action width is known, so a typo stops before any frame is encoded."""
    width = next((_action_width(p) for p in probes if p.ok), None)
    out = [d for d in dims if width is not None and d >= width]
    if out:
        raise ConfigError(
            f"--no-normalize-dims: dimension {out[0]} is out of range for {width}-dim actions "
            f"(dimensions count from 0)"
        )


def decide_widths(probes: list[EpisodeProbe], action_dim: int | None) -> list[str]:
    """The set's action width (`--action-dim`, else the majority's) and proprio width."""
    return [
        *_decide_width(probes, "action", _action_width, "--action-dim", action_dim),
        *_decide_width(probes, "proprio", _proprio_width, None, None),
    ]


def _action_width(p: EpisodeProbe) -> int:
    return int(p.info.actions.shape[1])


def _proprio_width(p: EpisodeProbe) -> int | None:
    return None if p.info.proprio is None else int(p.info.proprio.shape[1])


def _describe(what: str, width: int | None) -> str:
    return f"no {what}" if width is None else f"{what} has {width} dims"


def _decide_width(
    probes: list[EpisodeProbe],
    what: str,
    width_of: Callable[[EpisodeProbe], int | None],
    option: str | None,
    forced: int | None,
) -> list[str]:
    """The set's width of `what`: `forced` (by `option`), else the majority's (ties: the
    first episode's).

    Good episodes of another width are skipped; returns the decision when any were.
    """
    good = [p for p in probes if p.ok]
    if not good:
        return []
    widths = Counter(width_of(p) for p in good)
    chosen, count = (forced, widths[forced]) if forced is not None else widths.most_common(1)[0]
    example = next((p.relative for p in good if width_of(p) == chosen), "")
    has = f"no {what}" if chosen is None else chosen
    for p in good:
        if width_of(p) == chosen:
            continue
        if forced is not None:
            p.reason = f"{_describe(what, width_of(p))} but {option} is {chosen}"
        else:
            p.reason = (
                f"{_describe(what, width_of(p))} but {example} has {has}, "
                f"like {count} of {len(good)} episodes"
            )
    minority = len(good) - count
    if not minority:
        return []
    if forced is not None:
        return [f"{what} dim {chosen}: {option}; {minority} with another skipped"]
    hint = f" ({option} chooses another)" if option else ""
    return [
        f"{what} dim {'none' if chosen is None else chosen}: the majority, {count} of "
        f"{len(good)} episodes; {minority} with another skipped{hint}"
    ]


def decide_cameras(probes: list[EpisodeProbe], root: Path) -> tuple[tuple[str, ...], list[str]]:
    """Without --cameras: each camera most good episodes have; the rest lacking one are skipped.

    A camera only a minority has is left out rather than costing most episodes.
    """
    good = [p for p in probes if p.ok]
    if not good:
        return (), []
    names = canonical_order(c for p in good for c in p.info.cameras)
    counts = {c: sum(c in p.info.cameras for p in good) for c in names}
    chosen = tuple(c for c in names if 2 * counts[c] > len(good))
    if not chosen:
        raise ConfigError(f"{root}: no camera is in most of the good episodes; pick --cameras")
    decisions = [
        f"camera {c} left out: only in {counts[c]} of {len(good)} episodes"
        for c in names
        if c not in chosen
    ]
    lacking = [p for p in good if not set(chosen) <= set(p.info.cameras)]
    for p in lacking:
        missing = next(c for c in chosen if c not in p.info.cameras)
        p.reason = f"no camera '{missing}' (has {', '.join(p.info.cameras)})"
    if lacking:
        decisions.append(
            f"cameras {','.join(chosen)}: each in most of the {len(good)} episodes; "
            f"{len(lacking)} episode{'s' if len(lacking) > 1 else ''} lacking one skipped "
            "(--cameras chooses others)"
        )
    return chosen, decisions


def key_path(relative: str) -> str:
    """What an episode's sample key is made of: `a/b.hdf5#demo_3` -> `a/b/demo_3`."""
    base, _, item = relative.partition("#")
    base = base.removesuffix(".hdf5")
    return f"{base}/{item}" if item else base


def assign_keys(probes: list[EpisodeProbe]) -> None:
    """Each good episode's sample-key prefix; a later path whose key is taken is skipped."""
    owners: dict[str, str] = {}
    for p in probes:
        if not p.ok:
            continue
        key = episode_key(key_path(p.relative))
        if key in owners:
            p.reason = f"its sample key {key!r} collides with {owners[key]}; rename one file"
            continue
        owners[key] = p.relative
        p.key = key


def assign_split(probes: list[EpisodeProbe], config: PlanConfig) -> None:
    """Seeded split of the good episodes (in path order) into train and val, by whole episodes."""
    good = [p for p in probes if p.ok]
    for p in probes:
        p.split = None
    # A part of a scale-out conversion keeps every episode in train: the split is a choice
    # over all episodes, made when the parts are merged.
    n_val = 0 if config.part else split_counts(len(good), config.val_episodes)
    order = np.random.default_rng(config.seed).permutation(len(good))
    val = set(order[:n_val].tolist())
    for i, p in enumerate(good):
        p.split = "val" if i in val else "train"
