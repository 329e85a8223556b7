"""`vla-data convert`: plan, encode episodes in parallel, shuffle samples, write the set.

Data flow: plan (checksums, checks, split) -> workers encode each episode's samples into a
spool file -> a seeded permutation of every (episode, t) of a split picks samples from the
spools into shards -> stats.json -> manifest.json last. Everything lands in a hidden
staging folder that is renamed into place only when complete.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from common.errors import UserError
from pipeline.config import ConfigError, ConvertConfig, PlanConfig
from pipeline.encode import EncodeJob, encode_episode
from pipeline.output import check_target, discard, publish, staging_dir
from pipeline.parallel import WorkerPool, progress_bar
from pipeline.plan import EpisodeProbe, Plan, assign_split, make_plan
from pipeline.sources import EpisodeRef
from shards.format import SPLITS, STATS_FILE
from shards.manifest import EpisodeEntry, Manifest, ShardEntry, write_manifest
from shards.writer import ShardWriter
from stats.compute import DatasetStats, dataset_stats
from stats.io import write_stats


class ConvertError(UserError):
    """The conversion must stop; the message is for the user."""


@dataclass
class ConvertSummary:
    shards_dir: Path
    manifest: Manifest
    skipped: list[tuple[str, str]]  # (relative path, reason)
    decisions: list[str] = field(default_factory=list)  # choices that left something out


def tool_version() -> str:
    try:
        return version("vla-shards")
    except PackageNotFoundError:
        return "unknown"


def plan_stats(plan: Plan, config: PlanConfig) -> DatasetStats:
    """Statistics over every timestep of the plan's good train episodes, in path order."""
    train = plan.good("train")
    if not train:
        raise ConfigError("no good training episodes to compute statistics from")
    proprio = None
    if train[0].info.proprio is not None:
        proprio = [p.info.proprio for p in train]
    return dataset_stats([p.info.actions for p in train], proprio, config.no_normalize_dims)


def convert(config: ConvertConfig) -> ConvertSummary:
    target = check_target(config.shards_dir, config.overwrite, [config.episodes_dir])
    staging = None
    try:
        with WorkerPool(config.workers) as pool:
            plan = make_plan(config, pool)
            if not plan.good():
                raise ConvertError(_no_good_episodes(plan, config))
            if config.strict and (plan.skipped() or plan.decisions):
                raise ConvertError(_strict_failure(plan))
            staging = staging_dir(target)
            _encode(plan, config, staging, pool)
        if config.strict and plan.skipped():
            raise ConvertError(_strict_failure(plan))
        # The split is over the episodes that made it; this only moves anything when an
        # episode failed while encoding, and keeps a merge of parts equal to one conversion.
        assign_split(plan.probes, config)
        manifest = write_set(plan, config, staging)
        publish(staging, target, config.overwrite)
    finally:
        if staging is not None:
            discard(staging)  # a no-op once published; on error or Ctrl-C nothing half-made stays
    skipped = [(p.relative, p.reason) for p in plan.skipped()]
    return ConvertSummary(config.shards_dir, manifest, skipped, plan.decisions)


def _encode(plan: Plan, config: ConvertConfig, staging: Path, pool: WorkerPool) -> None:
    """Encode every good episode into staging/spool/; episodes failing here become skipped."""
    spool_dir = staging / "spool"
    spool_dir.mkdir()
    good = plan.good()
    jobs = [
        (
            EncodeJob(
                ref=EpisodeRef(p.path, p.relative, p.item),
                layout=plan.layout,
                instruction=p.instruction,
                rename=plan.rename,
                key=p.key,
                dataset=config.dataset_name,
                cameras=plan.cameras,
                image_size=config.image_size,
                jpeg=config.jpeg,
                chunk=config.chunk,
                spool=spool_dir / f"{i:06d}.bin",
            ),
        )
        for i, p in enumerate(good)
    ]
    results = pool.run_ordered(
        encode_episode,
        jobs,
        "encoding samples",
        config.progress,
        units=lambda r: 0 if r.offsets is None else len(r.offsets),
        total=sum(p.info.steps for p in good),
        unit_name="samples",
    )
    for probe, result in zip(good, results, strict=True):
        probe.encoded = result
        if result.reason is not None:
            probe.reason = result.reason


def write_set(plan: Plan, config: ConvertConfig, staging: Path) -> Manifest:
    splits: dict[str, list[ShardEntry]] = {}
    for index, split in enumerate(SPLITS):
        episodes = plan.good(split)
        if episodes:
            # One permutation of all (episode, t) of the split: shards mix many episodes.
            rng = np.random.default_rng([config.seed, index])
            splits[split] = _write_split(episodes, split, rng, config, staging)
    stats = plan_stats(plan, config)
    write_stats(staging / STATS_FILE, config.dataset_name, stats)
    discard(staging / "spool")
    first = plan.good()[0].info
    manifest = Manifest(
        dataset=config.dataset_name,
        tool_version=tool_version(),
        layout=plan.layout,
        cameras=list(plan.cameras),
        chunk=config.chunk,
        action_dim=int(first.actions.shape[1]),
        proprio_dim=None if first.proprio is None else int(first.proprio.shape[1]),
        image_size=config.image_size,
        options=config.recorded_options(),
        splits=splits,
        episodes=[_episode_entry(p) for p in plan.probes],
    )
    write_manifest(staging, manifest)  # last: a folder with a manifest is a complete set
    return manifest


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


def _episode_entry(p: EpisodeProbe) -> EpisodeEntry:
    return EpisodeEntry(
        path=p.relative,
        key=p.key if p.ok else "",
        sha256=p.sha256,
        steps=p.info.steps if p.info is not None else 0,
        split=p.split if p.ok else None,
        status="ok" if p.ok else "skipped",
        reason=p.reason,
    )


def _no_good_episodes(plan: Plan, config: ConvertConfig) -> str:
    if not plan.probes:
        return f"{config.episodes_dir}: no *.hdf5 episodes found"
    first = plan.probes[0]
    return (
        f"{config.episodes_dir}: none of {len(plan.probes)} episodes is usable "
        f"(e.g. {first.relative}: {first.reason})"
    )


def _strict_failure(plan: Plan) -> str:
    bad = plan.skipped()
    if not bad:
        return f"--strict: {'; '.join(plan.decisions)}; nothing written"
    lines = [f"{p.relative}: {p.reason}" for p in bad[:5]]
    more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
    return f"--strict: {len(bad)} bad episode(s), nothing written{more}:\n  " + "\n  ".join(lines)
