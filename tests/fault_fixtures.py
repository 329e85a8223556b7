"""Real faults for tests: a small real filesystem to fill, damaged files, a live `vla-train`."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from shard_fixtures import write_toy_shards

from trainer.run.loop import train
from trainer.run.train_config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def small_filesystem(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` (e.g. "2m") mounted at `where`: a disk that really fills up.

    Mounting needs root; elsewhere the test is skipped, saying why.
    """
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill ({done.stderr.strip()}); needs root")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(where: Path, leave: int) -> Path:
    """Fill the filesystem holding `where` until `leave` bytes are free; returns the filler."""
    filler = where / "filler"
    free = os.statvfs(where).f_bavail * os.statvfs(where).f_frsize
    with open(filler, "wb") as f:
        f.write(b"\0" * max(free - leave, 0))
    return filler


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def flip_byte(path: Path, offset_from_end: int = 100) -> None:
    """One byte changed inside the file's last bytes (tensor data in a safetensors file):
    same size, still parses."""
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0xFF
    path.write_bytes(bytes(data))


def vla_train(*args: str, **popen: object) -> subprocess.Popen:
    """`vla-train ARGS` as its own process, from this checkout, output as text pipes."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "trainer.cli", *args],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        **popen,
    )  # fmt: skip


def read_until(process: subprocess.Popen, text: str) -> str:
    """The process's output up to the first line holding `text` (fails if it ends first)."""
    seen = []
    for line in process.stdout:
        seen.append(line)
        if text in line:
            return "".join(seen)
    process.wait()
    raise AssertionError(f"ended ({process.returncode}) before {text!r}:\n{''.join(seen)}")


TINY = [
    "--base",
    "tiny",
    "--lora-rank",
    "4",
    "--device",
    "cpu",
    "--batch-size",
    "2",
    "--log-every",
    "1",
]


def cli(*args: str):
    """`vla-train ARGS` in this process (click's runner): for runs that need no signals."""
    from click.testing import CliRunner

    from trainer.cli import main

    return CliRunner().invoke(main, [*args])


def fails_with(result, text: str) -> None:
    """A one-line user error: non-zero exit, `text` in it, no traceback."""
    assert result.exit_code != 0, result.output
    assert text in result.output, result.output
    assert "Traceback" not in result.output and result.exception.__class__ is SystemExit


def train_two_steps(root: Path) -> tuple[Path, Path]:
    """A 2-step tiny run under `root`, saved at steps 1 and 2: its run folder and shards.
    Shaped as OpenVLA-OFT's LIBERO runs (chunk 8, 7 dims, the gripper unnormalized), so
    `export --to oft` takes it."""
    shards = write_toy_shards(root / "shards", chunk=8, action_dim=7, no_normalize=(6,))
    cfg = TrainConfig(shards=(str(shards),), run_dir=root / "run", base="tiny", lora_rank=4,
                      device="cpu", batch_size=2, max_steps=2, save_every=1, workers=0)  # fmt: skip
    train(cfg)
    return root / "run", shards
