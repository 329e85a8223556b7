"""A conversion onto a disk that really fills up: one line naming the folder, nothing left."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from episode_fixtures import CHUNK, IMAGE, make_episodes, run_convert
from fault_fixtures import fails_with, small_filesystem

from pipeline.cli import main


@pytest.fixture(scope="module")
def episodes(tmp_path_factory):
    root = tmp_path_factory.mktemp("full_disk")
    make_episodes(root / "episodes", episodes=4)
    run_convert(root / "episodes", root / "shards")  # how much room a whole set takes
    size = sum(f.stat().st_size for f in (root / "shards").iterdir())
    return root / "episodes", size


# The spools hold every sample once and the shards copy them, so a disk with room for half the
# set fills while encoding, and one with room for 1.5 sets fills while writing the shards.
@pytest.mark.parametrize("room", [0.5, 1.5], ids=["while encoding", "while writing shards"])
def test_a_full_disk_stops_the_conversion_in_one_line_and_leaves_nothing(episodes, tmp_path, room):
    episodes_dir, size = episodes
    with small_filesystem(tmp_path / "disk", f"{int(size * room) // 1024}k") as disk:
        result = CliRunner().invoke(main, [
            "convert", str(episodes_dir), str(disk / "shards"), "--workers", "2",
            "--image-size", str(IMAGE), "--chunk", str(CHUNK),
        ])  # fmt: skip
        fails_with(result, f"{disk}: No space left on device while writing; free space there")
        assert "bad episode" not in result.output and "usable" not in result.output
        assert list(disk.iterdir()) == []  # no staging folder, spool or half a set
