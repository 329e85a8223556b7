"""Scale-out conversion on a Ray cluster: one `convert --part i/n` task per part, then `merge`.

Every node must see the episodes and a shared scratch folder at the same paths (NFS,
Lustre, a mounted bucket). Each task is an ordinary one-machine conversion of its part,
so a failed task is simply re-run; the merge equals a one-machine conversion. Its command
line is pipeline/ray_convert.py.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from common.errors import UserError
from pipeline.config import ConvertConfig
from pipeline.convert.merge import MergeConfig, merge
from pipeline.convert.stages import ConvertSummary, convert


def part_configs(config: ConvertConfig, parts: int, scratch: Path) -> list[ConvertConfig]:
    """The per-part conversions of `config`, each writing to its own folder under `scratch`."""
    return [
        dataclasses.replace(
            config, shards_dir=scratch / f"part-{i:04d}", part=(i, parts), progress=False
        )
        for i in range(1, parts + 1)
    ]


def ray_convert(
    config: ConvertConfig,
    parts: int,
    scratch: Path,
    cpus_per_task: int = 1,
    address: str | None = None,
) -> ConvertSummary:
    """Convert the parts as Ray tasks, then merge them here. The tasks run where Ray is
    initialized in this process, else on the cluster at `address` (None: a local Ray)."""
    import ray  # optional dependency: only the Ray path needs it

    if not ray.is_initialized():
        ray.init(address=address)

    remote = ray.remote(num_cpus=cpus_per_task)(convert)
    configs = part_configs(config, parts, scratch)
    try:
        ray.get([remote.remote(c) for c in configs])
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, UserError):  # a bad episode under --strict, no episodes, ...
            raise exc.cause from None  # the user's one line, not the task's traceback
        raise
    summary = merge(MergeConfig(tuple(c.shards_dir for c in configs), config.shards_dir,
                                overwrite=config.overwrite, progress=config.progress))  # fmt: skip
    remove_parts(scratch, [c.shards_dir for c in configs])
    return summary


def remove_parts(scratch: Path, parts: list[Path]) -> None:
    """Delete the part sets, and `scratch` only if they were all it held: it may be the user's."""
    for part in parts:
        shutil.rmtree(part)
    if not any(scratch.iterdir()):
        scratch.rmdir()
