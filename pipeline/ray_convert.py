"""Scale-out conversion on a Ray cluster: one `convert --part i/n` task per part, then `merge`.

    python -m pipeline.ray_convert EPISODES_DIR SHARDS_DIR --parts 16 [--address auto]
        [--cpus-per-task 4] [--scratch DIR] [any option of `vla-data convert` but --part]

Every node must see EPISODES_DIR and a shared scratch folder at the same paths (NFS,
Lustre, a mounted bucket). Each task is an ordinary one-machine conversion of its part,
so a failed task is simply re-run; the merge equals a one-machine conversion.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import click

from common.errors import UserError
from pipeline.cli import report
from pipeline.config import ConvertConfig
from pipeline.convert import ConvertSummary, convert
from pipeline.merge import MergeConfig, merge
from pipeline.options import convert_config, convert_options
from shards.commandline import one_line_errors
from shards.loader_plan import AUTO


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


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("episodes_dir", type=click.Path(path_type=Path))
@click.argument("shards_dir", type=click.Path(path_type=Path))
@click.option(
    "--parts", type=click.IntRange(min=1), required=True,
    help="Ray tasks, each converting one part as `vla-data convert --part I/N` would.",
)  # fmt: skip
@click.option(
    "--scratch", type=click.Path(path_type=Path),
    help="Folder every node sees, for the parts [default: .SHARDS_DIR.parts beside SHARDS_DIR].",
)  # fmt: skip
@click.option(
    "--address",
    help="Ray cluster to join (auto: the one this node belongs to) [default: a local Ray].",
)
@click.option(
    "--cpus-per-task", type=click.IntRange(min=1), default=1, show_default=True,
    help="CPUs Ray reserves for each part; with --workers auto each part runs that many "
    "processes.",
)  # fmt: skip
@convert_options
@one_line_errors
def main(
    episodes_dir: Path,
    shards_dir: Path,
    parts: int,
    scratch: Path | None,
    address: str | None,
    cpus_per_task: int,
    **kw: Any,
) -> None:
    """Convert EPISODES_DIR into a shard set in SHARDS_DIR as --parts Ray tasks, then merge
    the parts here; every option of `vla-data convert` applies to each part."""
    # auto would count the cores of the machine the task lands on, not the ones Ray reserved.
    workers = cpus_per_task if kw["workers"] == AUTO else kw["workers"]
    config = convert_config(episodes_dir, shards_dir, {**kw, "workers": workers})
    scratch = scratch or shards_dir.parent / f".{shards_dir.name}.parts"
    report(ray_convert(config, parts, scratch, cpus_per_task, address))


if __name__ == "__main__":
    main()
