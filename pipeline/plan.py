"""Look at every episode once (checksum, structure, actions), then choose cameras and the split.

The plan is everything a conversion decides before it writes a byte; `vla-data stats`
on episodes uses the same plan, so its statistics equal what convert writes.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.cameras import CameraChoice, canonical_order, chosen_names, parse_cameras
from pipeline.config import ConfigError, PlanConfig
from pipeline.episodes import EpisodeError, EpisodeInfo, detect_layout, skip_reason
from pipeline.instructions import load_instructions
from pipeline.parallel import WorkerPool
from pipeline.sources import KNOWN_CAMERAS, EpisodeRef, key_path, list_refs, open_episode
from shards.format import episode_key

if TYPE_CHECKING:
    from pipeline.encode import EncodeResult


@dataclass
class EpisodeProbe:
    """What planning learned about one episode file."""

    path: Path
    relative: str  # posix path relative to the input folder (`#demo` for one of a file's many)
    sha256: str
    info: EpisodeInfo | None  # None when unreadable
    reason: str | None = None  # why the episode is skipped; None when good
    key: str = ""
    split: str | None = None
    encoded: EncodeResult | None = None  # set by the converter's encode stage
    item: str | None = None  # which episode of a file holding many (a demo group)
    instruction: str | None = None  # given from outside the file (--instruction, instruction.txt)

    @property
    def ok(self) -> bool:
        return self.reason is None


@dataclass
class Plan:
    layout: str
    cameras: tuple[str, ...]  # set names
    probes: list[EpisodeProbe]  # every episode, in sorted relative-path order
    decisions: list[str] = field(default_factory=list)  # choices that left something out
    rename: dict[str, str] = field(default_factory=dict)  # own/set name -> set name (--cameras)

    def good(self, split: str | None = None) -> list[EpisodeProbe]:
        return [p for p in self.probes if p.ok and (split is None or p.split == split)]

    def skipped(self) -> list[EpisodeProbe]:
        return [p for p in self.probes if not p.ok]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _hash_file(path: Path) -> str | None:
    try:
        return file_sha256(path)
    except OSError:
        return None  # the episode's probe says why it cannot be read


def probe_episode(
    ref: EpisodeRef,
    sha256: str | None,
    layout: str,
    cameras: tuple[str, ...] | None,
    instruction: str | None,
    rename: dict[str, str],
) -> EpisodeProbe:
    """Check one episode; whatever fails becomes its skip reason."""
    probe = EpisodeProbe(ref.path, ref.relative, sha256 or "", info=None, item=ref.item)
    probe.instruction = instruction
    try:
        if sha256 is None:
            file_sha256(ref.path)  # raises the OSError that says why
        with open_episode(ref, layout, instruction, rename) as episode:
            probe.info = episode.info()
            episode.check_cameras(cameras if cameras is not None else probe.info.cameras)
            if not probe.info.instructions:
                raise EpisodeError("has no language instructions")
            if probe.info.steps == 0:
                raise EpisodeError("has no timesteps")
    except Exception as exc:  # any failure is this episode's alone: see skip_reason
        probe.reason = skip_reason(exc, "checking")
    return probe


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


def make_plan(config: PlanConfig, pool: WorkerPool | None = None) -> Plan:
    """Probe every episode (in `pool`'s workers, or in a pool of its own) and decide."""
    if pool is None:
        with WorkerPool(config.workers) as own_pool:
            return make_plan(config, own_pool)
    root = config.episodes_dir
    layout = config.layout or detect_layout(root)
    choice = parse_cameras(config.cameras) if config.cameras is not None else None
    wanted = _chosen(choice, layout)
    refs = list_refs(root, layout)
    if config.part is not None:
        # Round-robin over the sorted list: parts are balanced and fixed by the folder alone.
        index, count = config.part
        refs = refs[index - 1 :: count]
    given = load_instructions(root, config.instruction, [r.relative for r in refs])
    if layout in ("aloha", "robomimic") and not given.any:
        raise ConfigError(
            f"{layout} episodes carry no language instruction; pass --instruction TEXT (or a "
            "JSON/YAML file mapping episodes to instructions), or put an instruction.txt "
            "in their folder"
        )
    files = sorted({r.path for r in refs})
    hashes = pool.run_ordered(_hash_file, [(f,) for f in files], "hashing files", config.progress)
    sha = dict(zip(files, hashes, strict=True))
    rename = choice.rename if choice else {}
    jobs = [(r, sha[r.path], layout, wanted, given.for_episode(r.relative), rename) for r in refs]
    probes = pool.run_ordered(probe_episode, jobs, "checking episodes", config.progress)
    # Every choice below is made for the many, never by whichever file sorts first, and each
    # one that leaves episodes or cameras out is said in the plan's decisions.
    decisions = [
        *_decide_width(probes, "action", _action_width, "--action-dim", config.action_dim),
        *_decide_width(probes, "proprio", _proprio_width, None, None),
    ]
    _check_no_normalize_dims(probes, config.no_normalize_dims)
    if wanted is not None:
        cameras = wanted
    else:
        cameras, said = _decide_cameras(probes, root)
        decisions += said
    assign_keys(probes)
    assign_split(probes, config)
    return Plan(layout, cameras, probes, decisions, rename)


def _chosen(choice: CameraChoice | None, layout: str) -> tuple[str, ...] | None:
    """The set's camera names `--cameras` gives in this layout (None: decided by the episodes)."""
    if choice is None:
        return None
    names = chosen_names(choice, KNOWN_CAMERAS[layout])
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"--cameras: {', '.join(twice)} is named twice")
    return names


def _check_no_normalize_dims(probes: list[EpisodeProbe], dims: tuple[int, ...]) -> None:
    """Checked once the action width is known, so a typo stops before any frame is encoded."""
    width = next((_action_width(p) for p in probes if p.ok), None)
    out = [d for d in dims if width is not None and d >= width]
    if out:
        raise ConfigError(
            f"--no-normalize-dims: dimension {out[0]} is out of range for {width}-dim actions "
            f"(dimensions count from 0)"
        )


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


def _decide_cameras(probes: list[EpisodeProbe], root: Path) -> tuple[tuple[str, ...], list[str]]:
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
