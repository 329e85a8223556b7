"""Damaged checkpoints, changed statistics, bad numbers and bad run folders, each as a user
meets them: real truncated or flipped files, one trained tiny run shared by the module."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
from fault_fixtures import TINY, cli, fails_with, flip_byte, train_two_steps, truncate
from shard_fixtures import write_toy_shards

from trainer.run.checksums import CHECKSUM_FILE, verify_checkpoint
from trainer.run.metrics import read_metrics


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-step tiny run saved at steps 1 and 2, and its shards."""
    return train_two_steps(tmp_path_factory.mktemp("trained"))


@pytest.fixture
def run_copy(trained, tmp_path):
    run_dir, shards = trained
    shutil.copytree(run_dir, tmp_path / "run")
    return tmp_path / "run", shards


DAMAGE = {
    "truncated adapter": ("adapter_model.safetensors", truncate),
    "flipped head byte": ("action_head.safetensors", flip_byte),
    "truncated state": ("trainer_state.pt", truncate),
    "broken adapter config": ("adapter_config.json", lambda p: p.write_text('{"r": 4,')),
}


@pytest.mark.parametrize("case", ["truncated adapter", "flipped head byte", "truncated state"])
def test_resume_skips_a_damaged_newest_checkpoint_saying_why(run_copy, case, caplog):
    run_dir, _ = run_copy
    name, damage = DAMAGE[case]
    damage(run_dir / "step-2" / name)
    stale = run_dir / ".step-3.tmp"  # a save that was killed
    stale.mkdir()
    (stale / "adapter_model.safetensors").write_bytes(b"half")
    caplog.set_level(logging.WARNING)
    result = cli("--resume", str(run_dir), "--max-steps", "2")
    assert result.exit_code == 0, result.output
    assert f"skipping step-2: {run_dir / 'step-2' / name}: damaged" in caplog.text
    assert f"resuming from {run_dir / 'step-1'}" in caplog.text
    assert f"removed {stale}: a half-written checkpoint" in result.output
    assert not stale.exists()
    assert verify_checkpoint(run_dir / "step-2")  # saved again, whole
    assert [r["step"] for r in read_metrics(run_dir)] == [1, 2]


def test_every_checkpoint_damaged_is_one_line_naming_each(run_copy):
    run_dir, _ = run_copy
    truncate(run_dir / "step-1" / "trainer_state.pt")
    flip_byte(run_dir / "step-2" / "adapter_model.safetensors")
    result = cli("--resume", str(run_dir), "--max-steps", "3")
    fails_with(result, f"{run_dir}: no step-N checkpoint to resume from; every one is damaged")
    assert "step-2 (" in result.output and "step-1 (" in result.output


@pytest.mark.parametrize("case", list(DAMAGE))
def test_predict_and_both_exports_name_the_damaged_file(run_copy, case, tmp_path):
    run_dir, shards = run_copy
    name, damage = DAMAGE[case]
    step = run_dir / "step-2"
    damage(step / name)
    message = f"{step / name}: damaged"
    fails_with(cli("predict", str(step), "--shards", str(shards), "-n", "1"), message)
    for target in ("oft", "merged"):
        out = tmp_path / f"out-{target}"
        fails_with(cli("export", str(step), str(out), "--to", target), message)
        assert not out.exists() and not list(tmp_path.glob(".out-*"))


def test_an_old_checkpoint_without_checksums_loads_and_a_broken_one_is_still_one_line(
    run_copy, tmp_path, caplog
):
    run_dir, shards = run_copy
    step = run_dir / "step-2"
    (step / CHECKSUM_FILE).unlink()
    caplog.set_level(logging.WARNING)
    result = cli("predict", str(step), "--shards", str(shards), "-n", "1")
    assert result.exit_code == 0, result.output
    assert f"{step} records no checksums (saved by an older version)" in caplog.text
    (step / "adapter_config.json").write_text('{"r": 4,')
    fails_with(cli("export", str(step), str(tmp_path / "o")), "adapter_config.json: not JSON")
    truncate(step / "adapter_model.safetensors")
    message = f"{step / 'adapter_model.safetensors'}: not a readable safetensors file"
    fails_with(cli("predict", str(step), "--shards", str(shards), "-n", "1"), message)
    fails_with(cli("export", str(step), str(tmp_path / "o"), "--to", "merged"), message)
    (step / "trainer_state.pt").write_bytes(b"PK\x03\x04 not a whole zip")
    (run_dir / "step-1" / CHECKSUM_FILE).unlink()
    (run_dir / "step-1" / "trainer_state.pt").write_bytes(b"")
    fails_with(cli("--resume", str(run_dir)), "trainer_state.pt: unreadable")


def test_resume_refuses_changed_statistics_unless_asked(run_copy, tmp_path, caplog):
    run_dir, shards = run_copy
    moved = shutil.copytree(shards, tmp_path / "shards")
    stats = json.loads((moved / "stats.json").read_text())
    stats["toy"]["action"]["q99"][0] += 0.5  # the same shards, re-computed statistics
    (moved / "stats.json").write_text(json.dumps(stats))
    result = cli("--resume", str(run_dir), "--shards", str(moved), "--max-steps", "3")
    fails_with(result, f"{moved} holds other statistics (stats.json) than the dataset 'toy'")
    caplog.set_level(logging.WARNING)
    result = cli("--resume", str(run_dir), "--shards", str(moved), "--max-steps", "3",
                 "--allow-new-data")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "continuing on new data" in caplog.text


@pytest.mark.parametrize("value", ["inf", "nan", "-inf", "0"])
def test_a_non_finite_or_non_positive_lr_is_refused(tmp_path, value):
    result = cli("--shards", "s", "--run-dir", str(tmp_path / "r"), "--lr", value)
    fails_with(result, "--lr must be a finite number above 0")


def test_a_loss_that_turns_non_finite_stops_the_run_without_saving_it(trained, tmp_path):
    _, shards = trained
    run_dir = tmp_path / "r"
    result = cli("--shards", str(shards), "--run-dir", str(run_dir), *TINY, "--workers", "0",
                 "--lr", "1e30", "--max-steps", "6", "--save-every", "1")  # fmt: skip
    fails_with(result, "the training loss is nan; stopped without saving")
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    logged = [json.loads(line, parse_constant=_refuse) for line in lines]
    last = max(r["step"] for r in logged)
    assert sorted(p.name for p in run_dir.glob("step-*"))[-1] == f"step-{last}"
    assert f"step {last + 1}: the training loss is nan" in result.output


def _refuse(token):
    raise AssertionError(f"metrics.jsonl holds {token}, which is not JSON")


def test_bad_run_folders_and_empty_shards_are_refused_before_any_model_loads(tmp_path):
    (tmp_path / "file").write_text("")
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    shards = write_toy_shards(tmp_path / "s", train_episodes=1, val_episodes=0, steps=2)
    missing = f"a symlink to {tmp_path / 'gone'}, which is missing"
    for run_dir, message in [("file", "a file, not a folder"), ("link", missing)]:
        result = cli("--shards", str(shards), "--run-dir", str(tmp_path / run_dir), *TINY)
        fails_with(result, f"--run-dir {tmp_path / run_dir}: {message}")
    fails_with(cli("--shards", "", "--run-dir", str(tmp_path / "r")), "--shards is empty")
