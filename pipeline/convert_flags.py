"""The command-line flags of a conversion and the configs they fill, declared once for
`vla-data convert`, `vla-data stats EPISODES_DIR` and the Ray job so they cannot drift; and
the summary both command lines print when a set is written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from pipeline.config import ConvertConfig, parse_dims, parse_val_episodes
from pipeline.convert.stages import ConvertSummary
from pipeline.inputs.registry import LAYOUTS
from shards.commandline import camera_list
from shards.format import SUBSAMPLINGS
from shards.loader_plan import AUTO
from shards.platforms import PLATFORMS


def workers_option(work: str) -> Callable:
    """`--workers` of the commands that run processes: the same word and default in each."""
    return click.option(
        "--workers", default=AUTO, show_default=True,
        help=f"Processes {work}: a count, or auto: one per core this process may use "
        "(its CPU affinity and cgroup quota).",
    )  # fmt: skip


def _apply(fn: Callable, options: list[Callable]) -> Callable:
    for option in reversed(options):  # decorators apply bottom-up; --help lists them in order
        fn = option(fn)
    return fn


def plan_options(fn: Callable) -> Callable:
    """Options shared by `convert` and `stats EPISODES_DIR`: both must plan identically."""
    return _apply(fn, [
        click.option("--layout", type=click.Choice(LAYOUTS), help="Force a layout."),
        click.option("--cameras", help="Comma-separated cameras by the file's or the set's "
                     "name, OWN:NAME renames: head,left_wrist or top:head,cam_left_wrist."),
        click.option("--val-episodes", help="Val episodes: a count (3) or a fraction (0.05) "
                     "[default: an RLDS set's own val split, else 0.05]"),
        click.option("--seed", default=0, show_default=True, help="Seeds split and shuffle."),
        click.option("--instruction", help="Instruction for episodes without language (aloha, "
                     "robomimic): text, or a JSON/YAML file mapping files/folders to text."),
        click.option("--no-normalize-dims", default="", help="Action dims with mask false: 6,13."),
        click.option("--action-dim", type=int, default=None,
                     help="Keep episodes of this action width (default: most episodes')."),
        click.option("--name", help="Dataset name (default: the input folder's name)."),
        click.option("--rlds-dataset", metavar="NAME", help="The dataset to read when the "
                     "input is a TFDS data folder holding several."),
        click.option("--robot", type=click.Choice(sorted(PLATFORMS)),
                     help="The OpenVLA-OFT platform the set trains for: its action width, masks, "
                     "chunk and normalization; libero also drops OFT's no-op steps and clips "
                     "and inverts the gripper as OFT does (docs/OFT.md)."),
        workers_option("working on the episodes"),
    ])  # fmt: skip


def convert_options(fn: Callable) -> Callable:
    """Every option of a conversion: the plan's, then how samples and shards are written.

    `--part` is not among them: `convert` adds it, and the Ray job makes the parts itself.
    """
    return _apply(fn, [
        plan_options,
        click.option("--image-size", default=224, show_default=True,
                     help="Side frames are resized to."),
        click.option("--jpeg-quality", default=95, show_default=True,
                     help="JPEG quality of frames."),
        click.option("--jpeg-subsampling", type=click.Choice(SUBSAMPLINGS), default="420",
                     show_default=True, help="Chroma subsampling of frames: 420 as RLDS "
                     "datasets store them (twice as fast to decode), 444 keeps full colour."),
        click.option("--chunk", type=int, default=None,
                     help="Action rows per sample [default: the --robot's, else 8]."),
        click.option("--shard-samples", default=1000, show_default=True,
                     help="Samples per tar shard."),
        click.option("--strict", is_flag=True,
                     help="Any bad episode is an error; nothing is written."),
        click.option("--overwrite", is_flag=True, help="Replace an existing shard set."),
        click.option("--quiet", is_flag=True, help="No progress bars."),
    ])  # fmt: skip


def plan_kwargs(episodes_dir: Path, kw: dict[str, Any]) -> dict[str, Any]:
    """PlanConfig's fields from the values of `plan_options`."""
    return {
        "episodes_dir": episodes_dir,
        "layout": kw["layout"],
        "cameras": camera_list(kw["cameras"]) or None,
        "val_episodes": None
        if kw["val_episodes"] is None
        else parse_val_episodes(kw["val_episodes"]),
        "seed": kw["seed"],
        "instruction": kw["instruction"],
        "no_normalize_dims": parse_dims(kw["no_normalize_dims"]),
        "action_dim": kw["action_dim"],
        "name": kw["name"],
        "rlds_dataset": kw["rlds_dataset"],
        "robot": kw["robot"],
        "workers": kw["workers"],
    }


def convert_config(
    episodes_dir: Path, shards_dir: Path, kw: dict[str, Any], **fields: Any
) -> ConvertConfig:
    """The ConvertConfig of `convert_options`' values; `fields`: those a command sets itself."""
    return ConvertConfig(
        **plan_kwargs(episodes_dir, kw),
        shards_dir=shards_dir,
        image_size=kw["image_size"],
        jpeg_quality=kw["jpeg_quality"],
        jpeg_subsampling=kw["jpeg_subsampling"],
        chunk=kw["chunk"],
        shard_samples=kw["shard_samples"],
        strict=kw["strict"],
        overwrite=kw["overwrite"],
        progress=not kw["quiet"],
        **fields,
    )


def report(summary: ConvertSummary) -> None:
    """What a written set holds, the decisions that left something out, and what was skipped."""
    m = summary.manifest
    n_shards = sum(len(s) for s in m.splits.values())
    click.echo(
        f"wrote {m.samples('train') + m.samples('val')} samples in {n_shards} shards to "
        f"{summary.shards_dir}: train {m.episode_count('train')} episodes / "
        f"{m.samples('train')} samples, val {m.episode_count('val')} / {m.samples('val')}; "
        f"cameras {','.join(m.cameras)}; skipped {len(summary.skipped)} episode(s)"
    )
    for decision in summary.decisions:
        click.echo(f"decided: {decision}")
    for path, reason in summary.skipped:
        click.echo(f"skipped {path}: {reason}", err=True)
