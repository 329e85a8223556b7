"""`vla-data merge`: join sets made by `convert --part i/n` into the set one machine would make.

No image is touched again: every sample's tar bytes are copied from the parts into one
spool, each episode's per-timestep rows are recovered from its samples, and then the
single-machine stages decide keys and split and write shards, stats and manifest. So the
merged set equals a one-machine conversion of the same episodes, byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.errors import ConfigError
from pipeline.config import ConvertConfig
from pipeline.convert.decide import assign_keys, assign_split
from pipeline.convert.output import check_target, discard, publish, staging_dir
from pipeline.convert.plan import EncodeResult, EpisodeProbe, Plan
from pipeline.convert.stages import ConvertSummary
from pipeline.convert.write import record_manifest, write_set_stats, write_shards
from pipeline.inputs.layout import EpisodeInfo
from shards.format import (
    ACTIONS_MEMBER,
    META_MEMBER,
    decode_actions,
    decode_meta,
    jpeg_storage,
)
from shards.manifest import Manifest
from shards.samples import iter_raw_samples
from shards.source import ShardSet, open_shard_set
from shards.writer import sample_tar_bytes

# Manifest fields every part must share with the others.
_SHARED = ("dataset", "layout", "cameras", "chunk", "action_dim", "proprio_dim", "image_size")


@dataclass
class MergeConfig:
    parts: tuple[Path, ...]  # the part folders, any order
    out_dir: Path
    overwrite: bool = False  # replace an existing shard set at out_dir
    progress: bool = True

    def __post_init__(self) -> None:
        if not self.parts:
            raise ConfigError("merge needs at least one part folder")


@dataclass
class _Episode:
    steps: int
    instructions: list[str]
    unseen: list[str]
    actions: dict[int, np.ndarray]
    proprio: dict[int, np.ndarray]
    offsets: dict[int, tuple[int, int]]


def merge(config: MergeConfig) -> ConvertSummary:
    target = check_target(config.out_dir, config.overwrite, config.parts)
    sets = [open_shard_set(p) for p in config.parts]
    convert_config = _convert_config(sets, config)
    staging = staging_dir(target)
    try:
        spool = staging / "spool"
        spool.mkdir()
        episodes = _gather(sets, spool / "samples.bin")
        plan = _plan(sets, episodes, spool / "samples.bin")
        assign_keys(plan.probes)
        assign_split(plan.probes, convert_config)
        shards = write_shards(plan, convert_config, staging)
        discard(spool)
        write_set_stats(plan, convert_config, staging)
        manifest = record_manifest(plan, convert_config, shards, staging)
        publish(staging, target, config.overwrite)
    finally:
        discard(staging)
    skipped = [(p.relative, p.reason) for p in plan.skipped()]
    return ConvertSummary(config.out_dir, manifest, skipped)


def _convert_config(sets: list[ShardSet], config: MergeConfig) -> ConvertConfig:
    """The one-machine options the parts were made with; refuses parts that disagree."""
    first = sets[0].manifest
    parts = []
    for s in sets:
        m = s.manifest
        for name in _SHARED:
            if getattr(m, name) != getattr(first, name):
                raise ConfigError(
                    f"{s.source}: {name} is {getattr(m, name)!r} but {sets[0].source} has "
                    f"{getattr(first, name)!r}; parts must be converted with the same options"
                )
        options = {k: v for k, v in m.options.items() if k != "part"}
        if options != {k: v for k, v in first.options.items() if k != "part"}:
            raise ConfigError(f"{s.source}: converted with other options than {sets[0].source}")
        if not m.options.get("part"):
            raise ConfigError(f"{s.source}: not made with `vla-data convert --part I/N`")
        parts.append(tuple(m.options["part"]))
    count = parts[0][1]
    expected = {(i, count) for i in range(1, count + 1)}
    if sorted(parts) != sorted(expected):
        missing = sorted(expected - set(parts))
        raise ConfigError(
            f"merge needs each of parts 1..{count} exactly once; got {sorted(parts)}"
            + (f", missing {[f'{i}/{n}' for i, n in missing]}" if missing else "")
        )
    o = first.options
    jpeg = jpeg_storage(o)  # parts made before the subsampling was recorded hold 4:4:4
    return ConvertConfig(
        episodes_dir=Path(o["name"]),
        shards_dir=config.out_dir,
        layout=o["layout"],
        cameras=tuple(o["cameras"]) if o["cameras"] else None,
        val_episodes=o["val_episodes"],
        seed=o["seed"],
        instruction=o["instruction"],
        no_normalize_dims=tuple(o["no_normalize_dims"]),
        action_dim=o.get("action_dim"),  # absent from parts made before the option
        name=o["name"],
        rlds_dataset=o.get("rlds_dataset"),  # recorded only when given
        image_size=o["image_size"],
        jpeg_quality=jpeg.quality,
        jpeg_subsampling=jpeg.subsampling,
        chunk=o["chunk"],
        robot=o.get("robot"),  # absent from sets made without --robot
        shard_samples=o["shard_samples"],
        strict=o["strict"],
        overwrite=config.overwrite,
        progress=config.progress,
        workers=1,
    )


def _gather(sets: list[ShardSet], spool_path: Path) -> dict[str, _Episode]:
    """Copy every sample of every part into one spool; recover each episode's rows."""
    episodes: dict[str, _Episode] = {}
    position = 0
    with open(spool_path, "wb") as spool:
        for shard_set in sets:
            for split in shard_set.manifest.splits:
                for name in shard_set.shard_names(split):
                    with shard_set.open_shard(name) as stream:
                        for raw in iter_raw_samples(stream, shard_set.location(name)):
                            fields = {f: v for f, v in raw.items() if not f.startswith("__")}
                            data = sample_tar_bytes(raw["__key__"], fields)
                            spool.write(data)
                            meta = decode_meta(raw[META_MEMBER])
                            ep = episodes.setdefault(meta["episode"], _new_episode(meta))
                            t = meta["t"]
                            ep.actions[t] = decode_actions(raw[ACTIONS_MEMBER])[0]
                            if "proprio" in meta:
                                ep.proprio[t] = np.asarray(meta["proprio"], np.float32)
                            ep.offsets[t] = (position, len(data))
                            position += len(data)
    return episodes


def _new_episode(meta: dict) -> _Episode:
    return _Episode(meta["steps"], meta["instructions"], meta["unseen"], {}, {}, {})


def _plan(sets: list[ShardSet], episodes: dict[str, _Episode], spool_path: Path) -> Plan:
    manifests: list[Manifest] = [s.manifest for s in sets]
    entries = sorted((e for m in manifests for e in m.episodes), key=lambda e: e.path)
    probes = []
    for entry in entries:
        probe = EpisodeProbe(Path(entry.path), entry.path, entry.sha256, info=None)
        if entry.status != "ok":
            probe.reason = entry.reason
        else:
            probe.info, probe.encoded = _episode_data(
                entry.key, episodes.get(entry.key), spool_path
            )
            probe.info.source = entry.source  # the input's own split is decided on it
            probe.info.dropped_steps = entry.dropped_steps  # --robot libero's count carries over
        probes.append(probe)
    first = manifests[0]
    return Plan(first.layout, tuple(first.cameras), probes, dataset=first.dataset)


def _episode_data(
    key: str, ep: _Episode | None, spool_path: Path
) -> tuple[EpisodeInfo, EncodeResult]:
    if ep is None or len(ep.offsets) != ep.steps:
        have = 0 if ep is None else len(ep.offsets)
        raise ConfigError(f"episode {key}: the parts hold {have} of its samples; re-convert it")
    order = range(ep.steps)
    proprio = np.stack([ep.proprio[t] for t in order]) if ep.proprio else None
    info = EpisodeInfo(
        steps=ep.steps,
        actions=np.stack([ep.actions[t] for t in order]),
        proprio=proprio,
        cameras=(),
        instructions=ep.instructions,
        unseen=ep.unseen,
    )
    offsets = np.array([ep.offsets[t] for t in order], dtype=np.int64)
    return info, EncodeResult(spool_path, offsets)
