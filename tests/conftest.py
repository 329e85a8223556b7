"""Shared fixtures."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from shard_fixtures import write_toy_shards

from bench.scratch import temp_files_into


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """The libraries the suite drives (torch's compiler cache, W&B, the peers' benches) write
    to the system's temporary folder and some leave files there; under pytest's own base
    folder they are removed with its old runs instead of piling up in /tmp."""
    temp_files_into(config._tmp_path_factory.getbasetemp())


@pytest.fixture
def toy_shards(tmp_path: Path) -> Path:
    """4 train shards x 16 samples, 1 val shard; cameras head, left_wrist, right_wrist."""
    return write_toy_shards(tmp_path / "shards")


@pytest.fixture
def many_toy_shards(tmp_path: Path) -> Path:
    """12 train shards of 8 samples each, for rank and worker splitting."""
    return write_toy_shards(tmp_path / "many", train_episodes=12, steps=8)


@pytest.fixture
def deadline():
    """Turn a hang into a failure: a test using this fails after 60 s instead of never ending."""

    def hung(signum, frame):
        raise TimeoutError("the test hung for 60 s")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)
