"""A real `vla-train` process stopped the ways clusters and people stop it: SIGTERM (Slurm's
notice before a preemption or the time limit), Ctrl-C, a second signal; and a second run
started on the folder of a live one."""

from __future__ import annotations

import json
import os
import signal

import pytest
from fault_fixtures import TINY, cli, fails_with, read_until, vla_train
from shard_fixtures import write_toy_shards

from trainer.run.checksums import verify_checkpoint
from trainer.run.metrics import read_metrics
from trainer.run.stop_signals import STOPPED_EXIT

LONG = ["--max-steps", "1000", "--save-every", "1000"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_toy_shards(tmp_path_factory.mktemp("preempt") / "shards")


@pytest.fixture(scope="module")
def terminated(shards, tmp_path_factory):
    """A run sent SIGTERM at step 2, with what a second run tried while it was alive."""
    run_dir = tmp_path_factory.mktemp("terminated") / "run"
    process = vla_train("--shards", str(shards), "--run-dir", str(run_dir), *TINY, "--workers",
                        "0", *LONG)  # fmt: skip
    try:
        before = read_until(process, "step 2 train")
        second = cli("--shards", str(shards), "--run-dir", str(run_dir), *TINY, *LONG)
        process.send_signal(signal.SIGTERM)
        after, _ = process.communicate(timeout=120)
    finally:
        process.kill()
    return run_dir, process, before + after, second


def test_sigterm_saves_after_the_step_and_exits_for_a_requeue(terminated):
    run_dir, process, output, _ = terminated
    assert process.returncode == STOPPED_EXIT, output
    saved = sorted(p.name for p in run_dir.glob("step-*"))
    assert len(saved) == 1, output
    step = int(saved[0].removeprefix("step-"))
    assert step >= 2
    assert verify_checkpoint(run_dir / saved[0])
    assert f"SIGTERM: stopped after step {step}, saved in {run_dir / saved[0]}" in output
    assert f"vla-train --resume {run_dir}" in output
    assert "Traceback" not in output
    assert [r["step"] for r in read_metrics(run_dir)] == list(range(1, step + 1))


def test_a_second_run_on_a_live_folder_is_refused_naming_the_holder(terminated):
    run_dir, process, _, second = terminated
    fails_with(second, f"{run_dir} is in use by another run (pid {process.pid} on ")
    assert len(second.output.strip().splitlines()) == 1, second.output


def test_after_the_stop_the_lock_is_free_and_resume_continues_the_metrics(terminated):
    run_dir, _, _, _ = terminated
    step = int(next(run_dir.glob("step-*")).name.removeprefix("step-"))
    result = cli("--resume", str(run_dir), "--max-steps", str(step + 1))
    assert result.exit_code == 0, result.output
    assert [r["step"] for r in read_metrics(run_dir)] == list(range(1, step + 2))


def test_ctrl_c_with_two_workers_saves_and_shows_no_traceback(shards, tmp_path, deadline):
    run_dir = tmp_path / "run"
    process = vla_train("--shards", str(shards), "--run-dir", str(run_dir), *TINY, "--workers",
                        "2", "--decode-threads", "0", *LONG, start_new_session=True)  # fmt: skip
    try:
        before = read_until(process, "step 2 train")
        os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole group
        after, _ = process.communicate(timeout=50)
    finally:
        process.kill()
    output = before + after
    assert process.returncode == STOPPED_EXIT, output
    assert "SIGINT: stopped after step" in output
    for word in ("Traceback", "KeyboardInterrupt", "Aborted"):
        assert word not in output, output
    assert len(list(run_dir.glob("step-*"))) == 1


def test_a_second_signal_stops_at_once_and_a_fresh_run_then_refuses_the_folder(
    shards, tmp_path, deadline
):
    run_dir = tmp_path / "run"
    slow = ["--grad-accum", "16"]  # a step long enough for the second signal to land in it
    process = vla_train("--shards", str(shards), "--run-dir", str(run_dir), *TINY, "--workers",
                        "0", *slow, *LONG)  # fmt: skip
    try:
        read_until(process, "step 1 train")
        process.send_signal(signal.SIGTERM)
        read_until(process, "SIGTERM: saving after this step")
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=50)
    finally:
        process.kill()
    assert process.returncode == 128 + signal.SIGTERM, output
    assert "SIGTERM again: stopping now, without saving" in output
    assert not list(run_dir.glob("*step-*"))
    # Its metrics stay; a new run there would mix its rows into them.
    assert [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").open()] == [1]
    result = cli("--shards", str(shards), "--run-dir", str(run_dir), *TINY)
    fails_with(result, f"{run_dir} holds metrics.jsonl of another run")
