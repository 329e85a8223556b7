"""The parts a run's safety rests on, each against the real thing: a second process holding
the lock, real signals, damaged files, a filesystem that is really full."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import torch
from fault_fixtures import ROOT, fill, flip_byte, small_filesystem, truncate
from safetensors.torch import save_file

from common.errors import ConfigError
from common.numbers import check_float
from trainer.run.checksums import (
    CHECKSUM_FILE,
    CorruptCheckpointError,
    verify_checkpoint,
    write_checksums,
)
from trainer.run.disk_space import WriteError
from trainer.run.folder_write import write_folder
from trainer.run.run_lock import LOCK_FILE, RunBusyError, RunLock, check_run_dir
from trainer.run.stop_signals import StopSignals

HOLD_LOCK = """
import sys, time
from pathlib import Path
from trainer.run.run_lock import RunLock
RunLock(Path(sys.argv[1])).acquire()
print("held", flush=True)
time.sleep(60)
"""


def _python(code: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], env=env, stdout=subprocess.PIPE, text=True
    )


def test_a_live_lock_is_refused_naming_its_holder_and_a_dead_ones_is_taken(tmp_path, deadline):
    run_dir = tmp_path / "run"
    holder = _python(HOLD_LOCK, str(run_dir))
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(RunBusyError, match=f"in use by another run \\(pid {holder.pid} on "):
            RunLock(run_dir).acquire()
    finally:
        holder.kill()  # SIGKILL: no chance to clean up; the kernel drops the lock
        holder.wait()
    assert f"pid {holder.pid}" in (run_dir / LOCK_FILE).read_text()  # the stale record stays
    with RunLock(run_dir):
        assert (run_dir / LOCK_FILE).read_text().startswith(f"pid {os.getpid()} on ")


def test_a_file_or_a_dangling_symlink_as_run_dir_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(Exception, match="a file, not a folder"):
        check_run_dir(tmp_path / "file")
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    with pytest.raises(Exception, match="which is missing"):
        check_run_dir(tmp_path / "link")
    with pytest.raises(Exception, match="is a file, not a folder"):
        check_run_dir(tmp_path / "file" / "run")


def _checkpoint(folder):
    folder.mkdir()
    save_file({"w": torch.arange(64, dtype=torch.float32)}, folder / "a.safetensors")
    (folder / "b.json").write_text('{"r": 4}\n')
    write_checksums(folder)
    return folder


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: truncate(f / "a.safetensors"), "a.safetensors: damaged"),
        (lambda f: flip_byte(f / "a.safetensors", 8), "a.safetensors: damaged"),
        (lambda f: (f / "b.json").write_text('{"r": 5}\n'), "b.json: damaged"),
        (lambda f: (f / "b.json").unlink(), "b.json: missing"),
        (lambda f: (f / CHECKSUM_FILE).write_text("nonsense\n"), "line 1 is not"),
    ],
)
def test_damaged_checkpoint_files_are_named(tmp_path, damage, message):
    folder = _checkpoint(tmp_path / "step-1")
    assert verify_checkpoint(folder) is True
    damage(folder)
    with pytest.raises(CorruptCheckpointError, match=message):
        verify_checkpoint(folder)


def test_checksums_are_sha256sum_compatible_and_old_folders_have_none(tmp_path):
    folder = _checkpoint(tmp_path / "step-1")
    check = subprocess.run(["sha256sum", "-c", CHECKSUM_FILE], cwd=folder, capture_output=True)
    assert check.returncode == 0, check.stdout
    (folder / CHECKSUM_FILE).unlink()
    assert verify_checkpoint(folder) is False


def test_a_full_disk_is_refused_before_writing_and_an_oserror_leaves_nothing(tmp_path):
    with small_filesystem(tmp_path / "disk", "1m") as disk:
        fill(disk, 200_000)
        with pytest.raises(WriteError, match=r"needs about 0\.3 MB, 0\.2 MB free"):
            write_folder(disk / ".x.tmp", lambda d: None, 300_000, "x")
        assert sorted(p.name for p in disk.iterdir()) == ["filler"]

        def too_big_text(folder):
            (folder / "big").write_bytes(b"1" * 400_000)

        def too_big_tensors(folder):
            save_file({"w": torch.zeros(100_000)}, folder / "w.safetensors")

        for writer in (too_big_text, too_big_tensors):  # the estimate was too low: a real ENOSPC
            with pytest.raises(WriteError, match="No space left on device while writing x"):
                write_folder(disk / ".x.tmp", writer, 1000, "x")
            assert sorted(p.name for p in disk.iterdir()) == ["filler"]


STOPPABLE = """
import sys, time
from trainer.run.stop_signals import StopSignals
with StopSignals() as stop:
    print("ready", flush=True)
    while stop.requested is None:
        time.sleep(0.01)
    print("asked", stop.requested, flush=True)
    time.sleep(60)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_first_signal_asks_to_stop_and_a_second_stops_at_once(sig, deadline):
    process = _python(STOPPABLE)
    assert process.stdout.readline() == "ready\n"
    process.send_signal(sig)
    assert process.stdout.readline() == f"asked {sig.name}\n"
    process.send_signal(sig)
    assert process.wait() == 128 + sig


def test_outside_the_context_signals_act_as_before():
    before = signal.getsignal(signal.SIGTERM)
    with StopSignals():
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", float("inf"), "x", 0.0, -1e-3])
def test_float_options_must_be_finite_and_in_range(value):
    with pytest.raises(ConfigError, match="--lr must be a"):
        check_float("--lr", value, above=0)
    assert check_float("--lr", "1e-4", above=0) == 1e-4
    assert check_float("--p", 1, at_least=0, at_most=1) == 1.0
