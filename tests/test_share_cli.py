"""vla-data verify, info, preview and stats --plot on a local set, through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from episode_fixtures import IMAGE, make_episodes, read_split, run_convert
from PIL import Image
from shard_fixtures import nan_statistic, write_toy_shards

from pipeline.cli import main
from shards.manifest import read_manifest


@pytest.fixture
def shard_set(tmp_path: Path) -> Path:
    make_episodes(tmp_path / "eps", episodes=4, steps=10)
    (tmp_path / "eps" / "episode_9.hdf5").write_bytes(b"truncated")
    run_convert(tmp_path / "eps", tmp_path / "shards", val_episodes=1, shard_samples=12)
    return tmp_path / "shards"


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_verify_passes_then_names_each_broken_shard(shard_set: Path) -> None:
    ok = invoke("verify", shard_set, "--workers", "1")
    assert ok.exit_code == 0, ok.output
    assert "OK: 4 shards, 40 samples, stats.json matches" in ok.output

    (shard_set / "train-000001.tar").unlink()
    with open(shard_set / "train-000000.tar", "r+b") as f:
        f.seek(2000)
        f.write(b"\xff" * 8)
    bad = invoke("verify", shard_set, "--workers", "2")
    assert bad.exit_code == 1
    assert "FAIL train-000000.tar" in bad.output and "FAIL train-000001.tar" in bad.output
    assert "ok   val-000000.tar" in bad.output
    assert "Traceback" not in bad.output


def test_verify_catches_a_sample_that_breaks_the_contract(shard_set: Path) -> None:
    manifest = json.loads((shard_set / "manifest.json").read_text())
    manifest["chunk"] = 4  # the samples hold 8 rows: every actions.npy is now out of contract
    (shard_set / "manifest.json").write_text(json.dumps(manifest))
    result = invoke("verify", shard_set, "--workers", "1")
    assert result.exit_code == 1
    assert "expected (4, 14)" in result.output


def test_info_lists_splits_and_skipped_episodes(shard_set: Path) -> None:
    result = invoke("info", shard_set)
    assert result.exit_code == 0, result.output
    assert "train       3 episodes, 30 samples, 3 shards" in result.output
    assert "val         1 episodes, 10 samples, 1 shards" in result.output
    assert "episode_9.hdf5: not a readable HDF5 file" in result.output


def _runs(flags: np.ndarray, min_len: int = 20) -> list[tuple[int, int]]:
    """[start, end) of each run of True at least min_len long."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flags.astype(int), [0]])))
    return [(a, b) for a, b in zip(edges[::2], edges[1::2], strict=True) if b - a >= min_len]


def test_preview_shows_each_sample_with_its_camera_frames(shard_set: Path, tmp_path: Path) -> None:
    result = invoke("preview", shard_set, "-o", tmp_path / "p.png", "-n", "3")
    assert result.exit_code == 0, result.output
    sheet = np.asarray(Image.open(tmp_path / "p.png").convert("RGB"))
    samples = read_split(shard_set, "train")[:3]  # the sheet shows the first ones, in shard order
    cameras = read_manifest(shard_set).cameras
    frames = [s["images"][c].astype(float) for s in samples for c in cameras]
    # The frames are the only solid blocks on the white page: rows of them (one per sample),
    # each row cut into one block per camera (the action plot after them is mostly white).
    inked = (sheet < 230).any(axis=-1)
    per_row = inked.sum(axis=1)
    cells = [
        (rows, cols)
        for rows in _runs(per_row > per_row.max() / 2)
        for cols in _runs(inked[slice(*rows)].mean(axis=0) > 0.95)
    ]
    assert len(cells) == len(frames) == 3 * 4
    for expected, (rows, cols) in enumerate(cells):
        shown = Image.fromarray(sheet[slice(*rows), slice(*cols)]).resize((IMAGE, IMAGE), Image.BOX)
        error = [np.abs(np.asarray(shown, float) - frame).mean() for frame in frames]
        # The stored frame, red square and all, and no other sample's or camera's.
        assert error[expected] < 3 and min(np.delete(error, expected)) > 5, (expected, error)


def _histogram_bars(shards: Path, out: Path) -> np.ndarray:
    """Where `stats --plot` drew histogram bars (their colour, #4c72b0)."""
    result = invoke("stats", shards, "--plot", out)
    assert result.exit_code == 0, result.output
    plot = np.asarray(Image.open(out).convert("RGB")).astype(int)
    return np.abs(plot - (0x4C, 0x72, 0xB0)).sum(axis=-1) < 30


def test_stats_plot_draws_every_dimension_from_the_data(shard_set: Path, tmp_path: Path) -> None:
    bars = _histogram_bars(shard_set, tmp_path / "s.png")
    height, width = bars.shape
    panels = [  # 14 dims in two rows of seven histograms
        bars[r * height // 2 : (r + 1) * height // 2, c * width // 7 : (c + 1) * width // 7]
        for r in range(2)
        for c in range(7)
    ]
    assert all(panel.sum() > 500 for panel in panels), [int(p.sum()) for p in panels]

    make_episodes(tmp_path / "other", episodes=3, steps=16)
    run_convert(tmp_path / "other", tmp_path / "other-shards", val_episodes=1)
    other = _histogram_bars(tmp_path / "other-shards", tmp_path / "other.png")
    assert other.shape == bars.shape and (other != bars).sum() > 0.2 * bars.sum()


def test_info_of_a_folder_that_is_no_shard_set_is_one_line(tmp_path: Path) -> None:
    result = invoke("info", tmp_path)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.count("\n") == 1


@pytest.mark.parametrize("command", ["verify", "stats", "info", "preview"])
def test_a_nan_statistic_is_refused_when_the_set_is_opened(tmp_path: Path, command: str) -> None:
    shards = nan_statistic(write_toy_shards(tmp_path / "toy"))
    extra = ["-o", tmp_path / "p.png"] if command == "preview" else []
    result = invoke(command, shards, *extra)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output == (
        f"Error: {shards / 'stats.json'}: dataset 'toy': action.q99[1] is nan; "
        "refusing to normalize with it (re-convert the set, or restore its stats.json)\n"
    )
