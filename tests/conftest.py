"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest
from shard_fixtures import write_toy_shards


@pytest.fixture
def toy_shards(tmp_path: Path) -> Path:
    """4 train shards x 16 samples, 1 val shard; cameras head, left_wrist, right_wrist."""
    return write_toy_shards(tmp_path / "shards")


@pytest.fixture
def many_toy_shards(tmp_path: Path) -> Path:
    """12 train shards of 8 samples each, for rank and worker splitting."""
    return write_toy_shards(tmp_path / "many", train_episodes=12, steps=8)
