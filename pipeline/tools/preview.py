"""Pictures a person looks at before training: a contact sheet of samples and action histograms."""

from __future__ import annotations

import itertools
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on training machines
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from shards.samples import decode_sample, iter_raw_samples  # noqa: E402
from shards.source import ShardSet  # noqa: E402
from stats.compute import ArrayStats  # noqa: E402


def first_samples(shard_set: ShardSet, split: str, n: int) -> list[dict]:
    """The first `n` samples of a split in shard order (already shuffled at conversion)."""
    cameras = shard_set.manifest.cameras
    samples: list[dict] = []
    for name in shard_set.shard_names(split):
        with shard_set.open_shard(name) as stream:
            raw_samples = iter_raw_samples(stream, shard_set.location(name))
            for raw in itertools.islice(raw_samples, n - len(samples)):
                samples.append(decode_sample(raw, cameras, shard_set.manifest))
        if len(samples) >= n:
            break
    return samples


CELL_IN = 2.4  # inches per image or plot cell
_CHARS_PER_IN = 17  # 7-point characters per inch of caption, on average


def sheet_figure(samples: list[dict], cameras: list[str]) -> plt.Figure:
    """One row per sample: every camera's image, then the action chunk per dimension.

    Each row's caption (key and instruction) is wrapped to the row's width, so long keys
    (LIBERO's run to ~100 characters) never squeeze the images.
    """
    if not samples:
        raise ValueError("no samples to preview")
    cols = len(cameras) + 1
    width = CELL_IN * cols
    fig = plt.figure(figsize=(width, 2.9 * len(samples)), layout="constrained")
    rows = fig.subfigures(len(samples), 1, squeeze=False)[:, 0]
    for sub, sample in zip(rows, samples, strict=True):
        meta = sample["meta"]
        instruction = meta["instructions"][0] if meta["instructions"] else "(no instruction)"
        caption = textwrap.fill(
            f"{sample['key']}: {instruction}", int(width * _CHARS_PER_IN), max_lines=3
        )
        sub.suptitle(caption, fontsize=7, x=0.01, ha="left")
        axes = sub.subplots(1, cols, squeeze=False)[0]
        for ax, camera in zip(axes, cameras, strict=False):
            ax.imshow(sample["images"][camera])
            ax.set_title(camera, fontsize=8)
            ax.axis("off")
        ax = axes[-1]
        chunk = sample["actions"]
        ax.plot(chunk, linewidth=0.8)
        if meta["valid"] < len(chunk):
            ax.axvline(meta["valid"] - 0.5, color="grey", linestyle=":", linewidth=0.8)
        ax.set_title(f"actions t={meta['t']} ({chunk.shape[1]} dims)", fontsize=8)
        ax.tick_params(labelsize=6)
    return fig


def contact_sheet(samples: list[dict], cameras: list[str], out: Path) -> None:
    """Write sheet_figure's picture to `out`."""
    fig = sheet_figure(samples, cameras)
    fig.savefig(out, dpi=80)
    plt.close(fig)


def histograms(rows: np.ndarray, stats: ArrayStats, title: str, out: Path) -> None:
    """Per-dimension histogram of every timestep's value, with the q01/q99 (and min/max) lines."""
    dims = rows.shape[1]
    cols = min(dims, 7)
    n_rows = -(-dims // cols)
    fig, axes = plt.subplots(n_rows, cols, figsize=(2.3 * cols, 1.9 * n_rows), squeeze=False)
    for d, ax in enumerate(axes.flat):
        if d >= dims:
            ax.axis("off")
            continue
        ax.hist(rows[:, d], bins=40, color="#4c72b0")
        for value, style in ((stats.q01[d], "--"), (stats.q99[d], "--")):
            ax.axvline(value, color="#dd8452", linestyle=style, linewidth=1)
        for value in (stats.min[d], stats.max[d]):
            ax.axvline(value, color="grey", linestyle=":", linewidth=0.8)
        masked = "" if stats.mask[d] else " (not normalized)"
        ax.set_title(f"dim {d}{masked}", fontsize=8)
        ax.tick_params(labelsize=6)
    fig.suptitle(f"{title}: q01/q99 dashed, min/max dotted", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)
