"""`vla-data`: the command line of the data side. Options only fill configs; errors are one line."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
from click.core import ParameterSource
from rich.console import Console
from rich.table import Table

from common.errors import ConfigError
from pipeline.config import PlanConfig, parse_part, process_count
from pipeline.convert.merge import MergeConfig, merge
from pipeline.convert.stages import convert, plan_episodes
from pipeline.convert.workers import WorkerPool
from pipeline.convert.write import plan_stats
from pipeline.convert_flags import (
    convert_config,
    convert_options,
    plan_kwargs,
    plan_options,
    report,
    workers_option,
)
from pipeline.generate.synthetic import LAYOUTS as GENERATED_LAYOUTS
from pipeline.generate.synthetic import GenerateConfig, generate
from pipeline.tools.info import describe
from pipeline.tools.verify import check_stats, summarize, train_rows, verify_shard
from shards.commandline import one_line_errors
from shards.format import STATS_FILE
from shards.manifest import is_shard_set
from shards.source import open_shard_set
from stats.compute import STAT_KEYS, DatasetStats
from stats.io import stats_to_json

_REMOTE = ("http://", "https://", "s3://")  # shard sets elsewhere; episodes are local


@click.group()
@click.version_option(package_name="vla-shards")
def main() -> None:
    """Turn robot HDF5 episodes into shareable WebDataset shards with action statistics."""


@main.command("convert")
@click.argument("episodes_dir", type=click.Path(path_type=Path))
@click.argument("shards_dir", type=click.Path(path_type=Path))
@convert_options
@click.option("--part", help="Convert only part I of N (I/N), for `vla-data merge`.")
@one_line_errors
def convert_cmd(episodes_dir: Path, shards_dir: Path, part: str | None, **kw) -> None:
    """Convert EPISODES_DIR into a shard set in SHARDS_DIR."""
    part_of = parse_part(part) if part else None
    report(convert(convert_config(episodes_dir, shards_dir, kw, part=part_of)))


@main.command("merge")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--overwrite", is_flag=True, help="Replace an existing shard set.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@one_line_errors
def merge_cmd(paths: tuple[Path, ...], overwrite: bool, quiet: bool) -> None:
    """Join part sets made by `convert --part I/N` into one set; the last path is the output."""
    if len(paths) < 2:
        raise click.UsageError("give the part folders and then the output folder")
    *parts, out_dir = paths
    report(merge(MergeConfig(tuple(parts), out_dir, overwrite=overwrite, progress=not quiet)))


@main.command("stats")
@click.argument("source", metavar="SHARDS|EPISODES_DIR")
@plan_options
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write stats JSON here.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON instead of a table.")
@click.option("--verify", is_flag=True, help="Recompute from the train samples and compare.")
@click.option("--plot", type=click.Path(path_type=Path), help="Write per-dim histograms (PNG).")
@one_line_errors
@click.pass_context
def stats_cmd(
    ctx: click.Context,
    source: str,
    output: Path | None,
    as_json: bool,
    verify: bool,
    plot: Path | None,
    **kw,
) -> None:
    """Show the statistics of the shard set SHARDS (a folder or URL), or compute them from
    EPISODES_DIR as `convert` would."""
    remote = source.startswith(_REMOTE)
    folder = Path(source)
    if remote or is_shard_set(folder):
        _refuse_plan_options(ctx, source, kw)
    rows = None
    if remote:
        if verify or plot is not None:
            raise click.ClickException(
                f"{source}: --verify and --plot read a local set; for a remote one, "
                f"`vla-data verify {source}` checks it"
            )
        shard_set = open_shard_set(source)
        name, entry = shard_set.manifest.dataset, shard_set.stats
    elif is_shard_set(folder):
        name, entry, rows = _local_set_stats(folder, verify, plot is not None)
    else:
        if verify:
            raise click.ClickException(f"{folder}: --verify needs a shard set (no manifest.json)")
        config = PlanConfig(**plan_kwargs(folder, kw), progress=False)
        plan = plan_episodes(config)
        name, entry = config.dataset_name, plan_stats(plan, config)
        rows = np.concatenate([p.info.actions for p in plan.good("train")])
    if plot is not None:
        from pipeline.tools.preview import histograms  # matplotlib: only plots need it

        histograms(rows, entry.action, f"{name} actions", plot)
        click.echo(f"wrote {plot}")
    text = stats_to_json(name, entry)
    if output is not None:
        output.write_text(text)
    if as_json:
        click.echo(text, nl=False)
    elif not verify:
        _print_stats(name, entry)


def _refuse_plan_options(ctx: click.Context, source: str, kw: dict) -> None:
    """A set's statistics are fixed: options that shape a conversion would be ignored."""
    given = [
        "--" + name.replace("_", "-")
        for name in kw
        if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE
    ]
    if given:
        raise click.ClickException(
            f"{source}: a shard set, whose statistics were fixed when it was converted; "
            f"{', '.join(given)} apply only to an episodes folder"
        )


def _local_set_stats(
    folder: Path, verify: bool, plot: bool
) -> tuple[str, DatasetStats, np.ndarray | None]:
    """A local set's name and stats.json, its train actions for a plot, checked with --verify."""
    # Opened as every reader opens a set: stats.json is checked against its manifest.
    shard_set = open_shard_set(folder, check_files=False)
    rows = None
    # One pass over the train shards serves both the plot and the check.
    collected = train_rows(shard_set) if plot or verify else None
    if plot:
        rows = np.concatenate([np.stack(r) for r in collected.actions.values()])
    if verify:
        problems = check_stats(shard_set, collected)
        for problem in problems:
            click.echo(f"mismatch {problem.quantity}.{problem.key}: {problem.detail}", err=True)
        if problems:
            raise click.ClickException(f"{folder}: stats.json disagrees with the train samples")
        click.echo(f"{folder / STATS_FILE}: matches the train samples")
    return shard_set.manifest.dataset, shard_set.stats, rows


def _print_stats(name: str, stats: DatasetStats) -> None:
    console = Console()
    for quantity, values in (("action", stats.action), ("proprio", stats.proprio)):
        if values is None:
            continue
        table = Table(title=f"{name}: {quantity}")
        table.add_column("dim", justify="right")
        for key in STAT_KEYS:
            table.add_column(key, justify="right")
        for d in range(len(values.mean)):
            row = [f"{getattr(values, k)[d]:.4f}" for k in STAT_KEYS if k != "mask"]
            table.add_row(str(d), *row, "yes" if values.mask[d] else "no")
        console.print(table)
    console.print(
        f"{stats.num_transitions} transitions from {stats.num_trajectories} train trajectories"
    )


@main.command("verify")
@click.argument("source", metavar="SHARDS")
@workers_option("checking shards")
@one_line_errors
def verify_cmd(source: str, workers: str) -> None:
    """Check the shard set SHARDS (a folder or URL): every shard's checksum and samples, and
    stats.json, against its manifest.json."""
    processes = process_count(workers)
    shard_set = open_shard_set(source, check_files=False)
    jobs = [
        (shard_set, split, entry)
        for split in shard_set.manifest.splits
        for entry in shard_set.manifest.shards(split)
    ]
    with WorkerPool(processes) as pool:
        reports = pool.run_ordered(verify_shard, jobs, "verifying shards", False)
    result = summarize(shard_set, reports)
    for r in result.shards:
        status = "ok  " if r.ok else "FAIL"
        click.echo(
            f"{status} {r.name}: {r.samples} samples" + "".join(f"\n     {p}" for p in r.problems)
        )
    for problem in result.set_problems:
        click.echo(f"FAIL set: {problem}")
    for m in result.stats_problems:
        click.echo(f"FAIL stats.json {m.quantity}.{m.key}: {m.detail}")
    if not result.ok:
        bad = sum(not r.ok for r in result.shards)
        raise click.ClickException(f"{source}: verification failed ({bad} bad shard(s))")
    samples = sum(r.samples for r in result.shards)
    click.echo(f"{source}: OK: {len(result.shards)} shards, {samples} samples, stats.json matches")


@main.command("info")
@click.argument("source", metavar="SHARDS")
@one_line_errors
def info_cmd(source: str) -> None:
    """Summarize the shard set SHARDS (a folder or URL): dataset, splits, cameras, chunk,
    size, skipped episodes."""
    shard_set = open_shard_set(source, check_files=False)
    for line in describe(shard_set.manifest, shard_set.source):
        click.echo(line)


@main.command("preview")
@click.argument("source", metavar="SHARDS")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default="preview.png",
    show_default=True,
    help="PNG to write.",
)
@click.option("-n", "--samples", default=8, show_default=True, help="Samples to show.")
@click.option(
    "--split", type=click.Choice(["train", "val"]), default="train", show_default=True,
    help="Split to show.",
)  # fmt: skip
@one_line_errors
def preview_cmd(source: str, output: Path, samples: int, split: str) -> None:
    """Contact sheet of -n samples of the shard set SHARDS (a folder or URL): every camera,
    the instruction, the action chunk."""
    # matplotlib is imported here, not at start-up: conversion workers re-import this module.
    from pipeline.tools.preview import contact_sheet, first_samples

    if samples < 1:
        raise ConfigError(f"-n must be at least 1, got {samples}")
    if not output.parent.is_dir():
        raise ConfigError(f"{output.parent}: no such folder for -o {output}")
    shard_set = open_shard_set(source)
    picked = first_samples(shard_set, split, samples)
    if not picked:
        raise click.ClickException(f"{source}: the {split} split has no samples")
    contact_sheet(picked, shard_set.manifest.cameras, output)
    click.echo(f"wrote {output} ({len(picked)} {split} samples)")


@main.command("generate")
@click.argument("out_dir", type=click.Path(path_type=Path))
@click.option(
    "--layout", type=click.Choice(GENERATED_LAYOUTS), default="processed", show_default=True,
    help="Which recorder's file layout to write.",
)  # fmt: skip
@click.option("--episodes", default=4, show_default=True, help="Episodes to write.")
@click.option("--steps", default=40, show_default=True, help="Steps per episode.")
@click.option("--seed", default=0, show_default=True, help="Seeds the generated content.")
@one_line_errors
def generate_cmd(out_dir: Path, layout: str, episodes: int, steps: int, seed: int) -> None:
    """Write small synthetic sample episodes (for trying the tools and for tests)."""
    config = GenerateConfig(out_dir, layout=layout, episodes=episodes, steps=steps, seed=seed)
    paths = generate(config)
    click.echo(f"wrote {len(paths)} {layout} episodes to {out_dir}")


if __name__ == "__main__":
    main()
