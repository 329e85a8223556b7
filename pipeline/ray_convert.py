"""`python -m pipeline.ray_convert`: the command line of a scale-out conversion on Ray.

    python -m pipeline.ray_convert EPISODES_DIR SHARDS_DIR --parts 16 [--address auto]
        [--cpus-per-task 4] [--scratch DIR] [any option of `vla-data convert` but --part]

The job itself (one `convert --part i/n` task per part, then `merge`) is
pipeline/convert/ray_job.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from pipeline.convert.ray_job import ray_convert
from pipeline.convert_flags import convert_config, convert_options, report
from shards.commandline import one_line_errors
from shards.loader_plan import AUTO


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
