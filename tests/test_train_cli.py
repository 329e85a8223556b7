"""`vla-train` through click's CliRunner: one-line messages for bad input, a bad shard survived."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from click.testing import CliRunner
from episode_fixtures import make_episodes, run_convert
from shard_fixtures import nan_statistic, no_sample_decodes, write_toy_shards

from shards.loader_plan import plan_loader
from trainer.cli import main
from trainer.run.metrics import read_metrics

TINY = ["--base", "tiny", "--lora-rank", "4", "--device", "cpu", "--workers", "0"]


def run(*args: str):
    return CliRunner().invoke(main, [*args])


def fails_with(result, text: str) -> None:
    assert result.exit_code != 0
    assert text in result.output
    assert "Traceback" not in result.output and result.exception.__class__ is SystemExit


def test_a_short_run_through_the_cli(toy_shards, tmp_path):
    args = ["--shards", str(toy_shards), "--run-dir", str(tmp_path / "r"), *TINY]
    result = run(*args, "--batch-size", "2", "--max-steps", "2", "--cameras", "head,right_wrist")
    assert result.exit_code == 0, result.output
    assert [r["step"] for r in read_metrics(tmp_path / "r")] == [1, 2]
    assert (tmp_path / "r" / "step-2" / "train_config.json").is_file()


def test_auto_loading_says_what_it_chose_and_the_run_saves_the_numbers(toy_shards, tmp_path):
    args = ["--shards", str(toy_shards), "--run-dir", str(tmp_path / "r"), *TINY[:-2]]
    result = run(*args, "--batch-size", "2", "--max-steps", "1")
    assert result.exit_code == 0, result.output
    plan = plan_loader()
    assert plan.line() in result.output
    # --decode auto, training on the CPU: the loader decodes, and the run saves that.
    assert "JPEGs decoded on the CPU, in the loader (auto: training on the CPU" in result.output
    saved = json.loads((tmp_path / "r" / "step-1" / "train_config.json").read_text())
    assert (saved["workers"], saved["decode_threads"]) == (plan.workers, plan.decode_threads)
    assert saved["decode"] == "cpu"


def test_decode_on_the_device_without_cuda_is_one_line(toy_shards, tmp_path):
    args = ["--shards", str(toy_shards), "--run-dir", str(tmp_path / "r"), *TINY]
    fails_with(run(*args, "--decode", "device"), "--decode device: training on the CPU, not a")
    assert not (tmp_path / "r").exists()  # refused before the run folder was made


@pytest.mark.parametrize(
    ("prepare", "message"),
    [
        (lambda root: root / "missing", "no such folder"),
        (lambda root: _mkdir(root / "empty"), "the folder is empty"),
        (lambda root: _without(root, "stats.json"), "stats.json: missing"),
        (lambda root: _without(root, "manifest.json"), "manifest.json: missing"),
    ],
)
def test_bad_shard_folders(tmp_path, prepare, message):
    shards = prepare(write_toy_shards(tmp_path / "s", train_episodes=1, val_episodes=0, steps=2))
    fails_with(run("--shards", str(shards), "--run-dir", str(tmp_path / "r"), *TINY), message)


def _mkdir(path):
    path.mkdir()
    return path


def _without(root, name):
    (root / name).unlink()
    return root


def test_a_camera_the_set_lacks(toy_shards, tmp_path):
    result = run("--shards", str(toy_shards), "--run-dir", str(tmp_path), "--cameras", "head,low")
    fails_with(result, "no camera low in this set; it has head, left_wrist, right_wrist")


def test_a_corrupt_shard_is_skipped_counted_and_survived(toy_shards, tmp_path, caplog):
    bad = toy_shards / "train-000002.tar"
    bad.write_bytes(bad.read_bytes()[:3000])
    caplog.set_level(logging.WARNING)
    result = run("--shards", str(toy_shards), "--run-dir", str(tmp_path / "r"), *TINY,
                 "--batch-size", "8", "--max-steps", "8", "--shuffle-buffer", "4")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert read_metrics(tmp_path / "r")[-1]["bad_shards"] == 1
    assert "train-000002.tar" in caplog.text


@pytest.mark.parametrize("workers", ["0", "2"])
def test_a_set_where_no_sample_decodes_stops_with_one_line(toy_shards, tmp_path, workers, deadline):
    no_sample_decodes(toy_shards)
    result = run("--shards", str(toy_shards), "--run-dir", str(tmp_path / "r"), *TINY,
                 "--workers", workers, "--batch-size", "4", "--max-steps", "3")  # fmt: skip
    fails_with(result, f"Error: {toy_shards}: 64 train samples in a row did not decode")
    assert len(result.output.strip().splitlines()) == 1, result.output


def test_a_nan_statistic_stops_training_before_any_step(toy_shards, tmp_path):
    result = run("--shards", str(nan_statistic(toy_shards)), "--run-dir", str(tmp_path / "r"),
                 *TINY, "--max-steps", "1")  # fmt: skip
    fails_with(result, f"{toy_shards / 'stats.json'}: dataset 'toy': action.q99[1] is nan")
    assert not (tmp_path / "r" / "metrics.jsonl").exists()


def test_resume_refuses_other_data_other_base_and_reused_folders(toy_shards, tmp_path):
    run_dir = str(tmp_path / "r")
    assert run("--shards", str(toy_shards), "--run-dir", run_dir, *TINY, "--batch-size", "2",
               "--max-steps", "1").exit_code == 0  # fmt: skip
    fails_with(run("--resume", run_dir, "--base", "openvla-7b-random"), "--base cannot change")
    other = write_toy_shards(tmp_path / "other", action_dim=5)
    fails_with(run("--resume", run_dir, "--shards", str(other)), "3-dim actions")
    fails_with(run("--shards", str(toy_shards), "--run-dir", run_dir, *TINY), "--resume")
    fails_with(run("--resume", str(tmp_path / "none")), "no step-N checkpoint")
    result = run("--resume", run_dir, "--max-steps", "2")
    assert result.exit_code == 0, result.output
    assert [r["step"] for r in read_metrics(tmp_path / "r")] == [1, 2]


def _one_step_run(shards, run_dir) -> str:
    result = run("--shards", str(shards), "--run-dir", str(run_dir), *TINY, "--batch-size", "2",
                 "--max-steps", "1")  # fmt: skip
    assert result.exit_code == 0, result.output
    return str(run_dir)


def test_resume_refuses_another_set_of_the_same_name_unless_asked(toy_shards, tmp_path, caplog):
    run_dir = _one_step_run(toy_shards, tmp_path / "r")
    other = write_toy_shards(tmp_path / "other", seed=1)  # also "toy", same dims, other samples
    result = run("--resume", run_dir, "--shards", str(other), "--max-steps", "2")
    fails_with(result, f"{other} holds other shards than the dataset 'toy' that {run_dir}/step-1")
    assert "--allow-new-data" in result.output
    fails_with(run("--shards", str(other), "--run-dir", str(tmp_path / "x"), "--allow-new-data"),
               "--allow-new-data goes with --resume")  # fmt: skip
    caplog.set_level(logging.WARNING)
    result = run("--resume", run_dir, "--shards", str(other), "--max-steps", "2",
                 "--allow-new-data")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"continuing on new data: {other}" in caplog.text
    # From here on the run's data is the new set: a plain resume on it goes on.
    assert run("--resume", run_dir, "--shards", str(other), "--max-steps", "3").exit_code == 0
    assert [r["step"] for r in read_metrics(tmp_path / "r")] == [1, 2, 3]


def test_a_checkpoint_from_before_set_digests_still_resumes(toy_shards, tmp_path, caplog):
    run_dir = _one_step_run(toy_shards, tmp_path / "r")
    path = tmp_path / "r" / "step-1" / "trainer_state.pt"
    state = torch.load(path, weights_only=True)
    state["sets"] = [
        {k: v for k, v in s.items() if k not in ("digest", "stats_digest")} for s in state["sets"]
    ]
    torch.save(state, path)
    (path.parent / "checksums.sha256").unlink()  # nor checksums, which came later still
    caplog.set_level(logging.WARNING)
    result = run("--resume", run_dir, "--max-steps", "2")
    assert result.exit_code == 0, result.output
    assert "records no digest of its shard sets" in caplog.text
    assert "records no digest of its sets' stats.json" in caplog.text
    assert "records no checksums (saved by an older version)" in caplog.text
    assert [r["step"] for r in read_metrics(tmp_path / "r")] == [1, 2]


def test_a_torn_last_metrics_line_is_dropped_with_a_warning_on_resume(toy_shards, tmp_path, caplog):
    run_dir = _one_step_run(toy_shards, tmp_path / "r")
    metrics = tmp_path / "r" / "metrics.jsonl"
    with open(metrics, "a") as f:
        f.write('{"step": 2, "split": "tra')  # the process was killed mid-write
    caplog.set_level(logging.WARNING)
    result = run("--resume", run_dir, "--max-steps", "2")
    assert result.exit_code == 0, result.output
    assert f"{metrics}: ignoring a torn last line" in caplog.text
    assert [r["step"] for r in read_metrics(tmp_path / "r")] == [1, 2]
    with open(metrics, "a") as f:
        f.write('{"step": 3, "sp')
    assert [r["step"] for r in read_metrics(tmp_path / "r")] == [1, 2]


def test_help_teaches_the_training_options_and_a_typo_is_not_a_training_run():
    help_text = run("--help").output
    assert "Training options" in help_text and "--shards" in help_text and "export" in help_text
    assert run("-h").output == help_text
    assert ", version " in run("--version").output  # the program name is the caller's
    typo = run("predcit")
    assert typo.exit_code == 2 and "No such command 'predcit'" in typo.output
    assert "predict" in typo.output


def test_a_run_saved_before_newer_options_resumes_as_it_trained():
    from trainer.run.train_config import TrainConfig

    saved = json.loads(TrainConfig(shards=("s",)).to_json())
    for name in ("episode_tail", "proprio", "film", "decode"):
        del saved[name]
    old = TrainConfig.from_json(json.dumps(saved), "train_config.json")
    assert (old.episode_tail, old.proprio, old.film, old.decode) == ("pad", False, False, "cpu")
    assert TrainConfig(shards=("s",)).episode_tail == "drop"  # what new runs get


def test_a_run_saved_with_images_for_its_cameras_still_loads():
    from trainer.run.train_config import TrainConfig

    saved = json.loads(TrainConfig(shards=("s",), cameras=("head", "low")).to_json())
    saved["images"] = saved.pop("cameras")  # the key's name before --images became --cameras
    old = TrainConfig.from_json(json.dumps(saved), "train_config.json")
    assert old.cameras == ("head", "low")


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (["--shards", "s", "--images", "head"], "--images is now --cameras"),
        (["train", "--shards", "s", "--images", "head"], "--images is now --cameras"),
        (["predict", "ck", "--shards", "s", "--images", "head"], "--images is now --cameras"),
        (["predict", "ck", "--n", "4"], "--n is now -n/--samples"),
    ],
)
def test_an_old_option_name_is_refused_with_the_new_one(args, hint):
    result = run(*args)
    assert result.exit_code == 2 and f"Error: {hint}" in result.output
    assert "Traceback" not in result.output


def test_a_full_disk_in_training_is_one_line(toy_shards, tmp_path, monkeypatch):
    import errno

    import trainer.cli

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "r" / "step-1"))

    monkeypatch.setattr(trainer.cli, "train_run", full)
    result = run("--shards", str(toy_shards), "--run-dir", str(tmp_path / "r"), *TINY)
    fails_with(result, f"Error: {tmp_path / 'r' / 'step-1'}: No space left on device")
    assert len(result.output.strip().splitlines()) == 1, result.output


def test_a_set_of_episodes_shorter_than_the_chunk_is_refused_not_waited_on(tmp_path):
    # Every sample is an episode tail, which the default --episode-tail drop leaves out.
    paths = make_episodes(tmp_path / "episodes", episodes=2, steps=5)
    run_convert(paths[0].parent, tmp_path / "shards", chunk=8, image_size=224)
    args = ["--shards", str(tmp_path / "shards"), "--run-dir", str(tmp_path / "r"), *TINY]
    fails_with(
        run(*args, "--max-steps", "1"),
        "every train episode is shorter than the set's 8-step chunk (the longest has 5)",
    )
    result = run(*args, "--max-steps", "1", "--batch-size", "2", "--episode-tail", "pad")
    assert result.exit_code == 0, result.output
