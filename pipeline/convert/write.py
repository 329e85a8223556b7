"""Stages 4 and 5 of a conversion: shuffle the spooled samples into shards, then stats.json,
then manifest.json (last: a folder with a manifest is a complete set)."""

from __future__ import annotations

import os
from collections import OrderedDict
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from common.errors import ConfigError
from pipeline.config import ConvertConfig, PlanConfig
from pipeline.convert.decide import val_in_force
from pipeline.convert.plan import EpisodeProbe, Plan
from pipeline.convert.workers import progress_bar
from pipeline.inputs.registry import input_layout
from shards.format import SPLITS, STATS_FILE
from shards.manifest import EpisodeEntry, Manifest, ShardEntry, write_manifest
from shards.writer import ShardWriter
from stats.compute import DatasetStats, dataset_stats
from stats.io import write_stats

Shards = dict[str, list[ShardEntry]]  # split -> its shards, in order


def write_shards(plan: Plan, config: ConvertConfig, staging: Path) -> Shards:
    """Every split's samples, in one seeded permutation of all its (episode, t), into
    `{split}-NNNNNN.tar` shards: shards mix many episodes."""
    shards: Shards = {}
    for index, split in enumerate(SPLITS):
        episodes = plan.good(split)
        if episodes:
            rng = np.random.default_rng([config.seed, index])
            shards[split] = _write_split(episodes, split, rng, config, staging)
    return shards


def _write_split(
    episodes: list[EpisodeProbe],
    split: str,
    rng: np.random.Generator,
    config: ConvertConfig,
    staging: Path,
) -> list[ShardEntry]:
    owners = np.concatenate([np.full(p.info.steps, i) for i, p in enumerate(episodes)])
    steps = np.concatenate([np.arange(p.info.steps) for p in episodes])
    order = rng.permutation(len(owners))
    with (
        ShardWriter(staging, split, config.shard_samples) as writer,
        _SpoolReader() as spools,
        progress_bar(config.progress) as bar,
    ):
        task = bar.add_task(f"writing {split} shards", total=len(order), rate="")
        for n, i in enumerate(order):
            encoded = episodes[owners[i]].encoded
            offset, length = encoded.offsets[steps[i]]
            writer.add(spools.read(encoded.spool, int(offset), int(length)))
            if n % 256 == 0:
                bar.update(task, completed=n)
        bar.update(task, completed=len(order))
        records = writer.close()
    return [ShardEntry(r.name, r.bytes, r.samples, r.sha256) for r in records]


class _SpoolReader:
    """Random reads from many spool files with a bounded number of open descriptors."""

    def __init__(self, max_open: int = 128) -> None:
        self._fds: OrderedDict[Path, int] = OrderedDict()
        self._max_open = max_open

    def read(self, path: Path, offset: int, length: int) -> bytes:
        fd = self._fds.pop(path, None)
        if fd is None:
            fd = os.open(path, os.O_RDONLY)
            if len(self._fds) >= self._max_open:
                os.close(self._fds.popitem(last=False)[1])
        self._fds[path] = fd
        return os.pread(fd, length, offset)

    def __enter__(self) -> _SpoolReader:
        return self

    def __exit__(self, *exc: object) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


def plan_stats(plan: Plan, config: PlanConfig) -> DatasetStats:
    """Statistics over every timestep of the plan's good train episodes, in path order."""
    train = plan.good("train")
    if not train:
        raise ConfigError("no good training episodes to compute statistics from")
    proprio = None
    if train[0].info.proprio is not None:
        proprio = [p.info.proprio for p in train]
    return dataset_stats([p.info.actions for p in train], proprio, config.no_normalize_dims)


def write_set_stats(plan: Plan, config: ConvertConfig, staging: Path) -> DatasetStats:
    """stats.json of the plan's train episodes."""
    stats = plan_stats(plan, config)
    write_stats(staging / STATS_FILE, plan.dataset, stats)
    return stats


def record_manifest(plan: Plan, config: ConvertConfig, shards: Shards, staging: Path) -> Manifest:
    """manifest.json: the set's shards, every episode (skipped ones with why), the options."""
    first = plan.good()[0].info
    val_episodes = val_in_force(config, input_layout(plan.layout).keeps_splits)
    manifest = Manifest(
        dataset=plan.dataset,
        tool_version=tool_version(),
        layout=plan.layout,
        cameras=list(plan.cameras),
        chunk=config.chunk,
        action_dim=int(first.actions.shape[1]),
        proprio_dim=None if first.proprio is None else int(first.proprio.shape[1]),
        image_size=config.image_size,
        options=config.recorded_options(plan.dataset, val_episodes),
        splits=shards,
        episodes=[_episode_entry(p) for p in plan.probes],
    )
    write_manifest(staging, manifest)
    return manifest


def tool_version() -> str:
    try:
        return version("vla-shards")
    except PackageNotFoundError:
        return "unknown"


def _episode_entry(p: EpisodeProbe) -> EpisodeEntry:
    return EpisodeEntry(
        path=p.relative,
        key=p.key if p.ok else "",
        sha256=p.sha256,
        steps=p.info.steps if p.info is not None else 0,
        split=p.split if p.ok else None,
        status="ok" if p.ok else "skipped",
        reason=p.reason,
        source=p.info.source if p.info is not None else None,
        dropped_steps=p.info.dropped_steps if p.info is not None and p.ok else 0,
    )
