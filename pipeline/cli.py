"""`vla-data`: the command line of the data side. Options only fill configs; errors are one line."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
from click.core import ParameterSource
from rich.console import Console
from rich.table import Table

from pipeline.config import ConfigError, PlanConfig, parse_part, process_count
from pipeline.convert import ConvertSummary, convert, plan_stats
from pipeline.episodes import FILE_LAYOUTS
from pipeline.generate import GenerateConfig, generate
from pipeline.info import describe
from pipeline.merge import MergeConfig, merge
from pipeline.options import (
    convert_config,
    convert_options,
    plan_kwargs,
    plan_options,
    workers_option,
)
from pipeline.parallel import WorkerPool
from pipeline.plan import make_plan
from pipeline.verify import check_stats, summarize, train_rows, verify_shard
from shards.commandline import camera_list, one_line_errors, renamed
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


def report(summary: ConvertSummary) -> None:
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
        # A set's statistics are fixed: options that shape a conversion would be ignored.
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
    if remote:
        if verify or plot is not None:
            raise click.ClickException(
                f"{source}: --verify and --plot read a local set; for a remote one, "
                f"`vla-data verify {source}` checks it"
            )
        shard_set = open_shard_set(source)
        stats = {shard_set.manifest.dataset: shard_set.stats}
    elif is_shard_set(folder):
        # Opened as every reader opens a set: stats.json is checked against its manifest.
        shard_set = open_shard_set(folder, check_files=False)
        stats = {shard_set.manifest.dataset: shard_set.stats}
        # One pass over the train shards serves both the plot and the check.
        collected = train_rows(shard_set) if plot is not None or verify else None
        if plot is not None:
            rows = np.concatenate([np.stack(r) for r in collected.actions.values()])
        if verify:
            problems = check_stats(shard_set, collected)
            for problem in problems:
                click.echo(f"mismatch {problem.quantity}.{problem.key}: {problem.detail}", err=True)
            if problems:
                raise click.ClickException(f"{folder}: stats.json disagrees with the train samples")
            click.echo(f"{folder / STATS_FILE}: matches the train samples")
    else:
        if verify:
            raise click.ClickException(f"{folder}: --verify needs a shard set (no manifest.json)")
        config = PlanConfig(**plan_kwargs(folder, kw), progress=False)
        plan = make_plan(config)
        stats = {config.dataset_name: plan_stats(plan, config)}
        rows = np.concatenate([p.info.actions for p in plan.good("train")])
    name, entry = next(iter(stats.items()))
    if plot is not None:
        from pipeline.preview import histograms  # matplotlib: only plots need it

        histograms(rows, entry.action, f"{name} actions", plot)
        click.echo(f"wrote {plot}")
    text = stats_to_json(name, entry)
    if output is not None:
        output.write_text(text)
    if as_json:
        click.echo(text, nl=False)
    elif not verify:
        _print_stats(name, entry)


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
    from pipeline.preview import contact_sheet, first_samples

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


@main.command("loadtest")
@click.argument("source", metavar="SHARDS")
@click.option(
    "--workers", default="auto", show_default=True,
    help="DataLoader worker processes (0: read in this process; auto: as vla-train chooses).",
)  # fmt: skip
@click.option(
    "--decode-threads", default="auto", show_default=True,
    help="Threads decoding JPEGs in each loading process (0: inline; auto).",
)  # fmt: skip
@click.option("--batch-size", default=8, show_default=True, help="Samples per batch.")
@click.option(
    "--cameras", default="head,left_wrist", show_default=True,
    help="Comma-separated cameras to load, as vla-train --cameras.",
)  # fmt: skip
@renamed("--images", "--cameras")
@click.option("-n", "--samples", default=4000, show_default=True, help="Samples to time.")
@click.option(
    "--shuffle-buffer", default=1000, show_default=True,
    help="Samples held per reading stream for shuffling.",
)  # fmt: skip
@one_line_errors
def loadtest_cmd(source: str, workers: str, decode_threads: str, batch_size: int, cameras: str,
                 samples: int, shuffle_buffer: int) -> None:  # fmt: skip
    """Time the trainer's CPU-side loader alone on the shard set SHARDS (a folder or URL):
    samples/s and MB/s of shard data."""
    from pipeline.loadtest import LoadtestConfig, loadtest  # torch: only this command needs it

    config = LoadtestConfig(
        source, workers, batch_size, camera_list(cameras), samples,
        shuffle_buffer=shuffle_buffer, decode_threads=decode_threads,
    )  # fmt: skip
    result = loadtest(config)
    click.echo(result.plan.line())
    click.echo(
        f"{result.samples_per_s:.1f} samples/s, {result.mb_per_s:.1f} MB/s "
        f"({result.samples} samples in {result.seconds:.2f} s, batch {batch_size}, "
        f"cameras {cameras}, tokenization included)"
    )


@main.command("generate")
@click.argument("out_dir", type=click.Path(path_type=Path))
@click.option(
    "--layout", type=click.Choice(FILE_LAYOUTS), default="processed", show_default=True,
    help="Which recorder's file layout to write.",
)  # fmt: skip
@click.option("--episodes", default=4, show_default=True, help="Episodes to write.")
@click.option(
    "--steps", type=int,
    help="Steps per episode [default: 40; with --env at most 400, ending at success].",
)  # fmt: skip
@click.option("--seed", default=0, show_default=True, help="Seeds the generated content.")
@click.option(
    "--env", help="Record the built-in scripted policy in this simulated task instead "
    "(aloha-transfer-cube, aloha-insertion), as ALOHA's simulation recorder does.",
)  # fmt: skip
@one_line_errors
def generate_cmd(
    out_dir: Path, layout: str, episodes: int, steps: int | None, seed: int, env: str | None
) -> None:
    """Write small synthetic sample episodes (for trying the tools and for tests)."""
    if env is not None:
        from sim.demos import record_demos  # the simulator loads only when asked for

        recorded = record_demos(env, out_dir, episodes, seed, steps or 400)
        wins = sum(result.success for _, result in recorded)
        click.echo(f"wrote {len(recorded)} aloha episodes of {env} to {out_dir}: {wins} succeeded")
        return
    config = GenerateConfig(out_dir, layout=layout, episodes=episodes, steps=steps or 40, seed=seed)
    paths = generate(config)
    click.echo(f"wrote {len(paths)} {layout} episodes to {out_dir}")


if __name__ == "__main__":
    main()
