"""vla-train loadtest: the trainer's loader alone, through the CLI, and the stream it reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from episode_fixtures import make_episodes, run_convert
from shard_fixtures import nan_statistic, no_sample_decodes, write_toy_shards

from shards.loader_plan import plan_loader
from trainer.cli import main
from trainer.run.loadtest import LoadtestConfig, trainer_stream


def invoke(*args: str | Path):
    return CliRunner().invoke(main, ["loadtest", *(str(a) for a in args)])


def assert_one_line(result, start: str) -> None:
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().splitlines() == [result.output.strip()]
    assert result.output.startswith(start), result.output


@pytest.fixture
def shard_set(tmp_path: Path) -> Path:
    make_episodes(tmp_path / "eps", episodes=4, steps=10)
    run_convert(tmp_path / "eps", tmp_path / "shards", val_episodes=1, shard_samples=12)
    return tmp_path / "shards"


@pytest.mark.parametrize("workers", ["0", "2"])
def test_a_set_where_no_sample_decodes_stops_with_one_line(
    tmp_path: Path, workers: str, deadline
) -> None:
    shards = no_sample_decodes(write_toy_shards(tmp_path / "toy"))
    result = invoke(shards, "--workers", workers, "--samples", "16")
    assert_one_line(result, f"Error: {shards}: 64 train samples in a row did not decode")


def test_a_nan_statistic_is_refused_when_the_set_is_opened(tmp_path: Path) -> None:
    shards = nan_statistic(write_toy_shards(tmp_path / "toy"))
    result = invoke(shards)
    assert result.output == (
        f"Error: {shards / 'stats.json'}: dataset 'toy': action.q99[1] is nan; "
        "refusing to normalize with it (re-convert the set, or restore its stats.json)\n"
    )
    assert_one_line(result, "Error: ")


def test_a_manifest_with_splits_as_a_list_is_refused(tmp_path: Path) -> None:
    shards = write_toy_shards(tmp_path / "toy")
    manifest = json.loads((shards / "manifest.json").read_text())
    manifest["splits"] = []
    (shards / "manifest.json").write_text(json.dumps(manifest))
    result = invoke(shards)
    assert_one_line(result, "Error: ")
    assert "manifest.json" in result.output and "splits" in result.output


def test_a_bad_batch_size_is_one_line(tmp_path: Path) -> None:
    shards = write_toy_shards(tmp_path / "toy")
    assert_one_line(invoke(shards, "--batch-size", "0", "--workers", "0"), "Error: --batch-size")


def test_takes_cameras_and_n_and_refuses_the_old_images(shard_set: Path) -> None:
    args = ["--workers", "0", "--decode-threads", "0", "--batch-size", "4", "--cameras", "head"]
    result = invoke(shard_set, *args, "-n", "8")
    assert result.exit_code == 0, result.output
    assert "batch 4, cameras head, tokenization included" in result.output
    assert " samples/s, " in result.output and " MB/s " in result.output
    old = invoke(shard_set, *args[:-2], "--images", "head")
    assert old.exit_code == 2 and "Error: --images is now --cameras" in old.output


def test_reads_what_vla_train_reads_by_default(shard_set: Path) -> None:
    config = LoadtestConfig(str(shard_set), workers=0, decode_threads=0, cameras=("head",))
    mixture, stream = trainer_stream(config, plan_loader(0, 0))
    manifest = mixture.sets[0].manifest
    assert stream.cameras == ("head",) and stream.batch_size == config.batch_size
    assert stream.drop_tail and not stream.finite and stream.seed == 0  # vla-train's defaults
    assert stream.proprio == (manifest.proprio_dim is not None)
    assert (stream.workers, stream.decode_threads) == (0, 0)
