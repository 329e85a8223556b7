"""Scale-out conversion: parts merged (by hand and through Ray) equal one-machine conversion."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from click.testing import CliRunner
from episode_fixtures import make_episodes, run_convert

from common.errors import ConfigError
from pipeline.cli import main as data_main
from pipeline.convert.merge import MergeConfig, merge


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture
def episodes(tmp_path: Path) -> Path:
    folder = tmp_path / "eps"
    make_episodes(folder, episodes=7, steps=9)
    (folder / "episode_3.hdf5").write_bytes(b"not hdf5")  # a bad episode lands in one part
    return folder


def convert_parts(episodes: Path, out: Path, n: int, **options) -> list[Path]:
    parts = [out / f"part{i}" for i in range(1, n + 1)]
    for i, part in enumerate(parts, start=1):
        run_convert(episodes, part, part=(i, n), **options)
    return parts


def test_merged_parts_equal_one_machine_byte_for_byte(episodes: Path, tmp_path: Path) -> None:
    options = {"val_episodes": 2, "shard_samples": 10, "seed": 5}
    run_convert(episodes, tmp_path / "single", **options)
    parts = convert_parts(episodes, tmp_path, 3, **options)
    summary = merge(MergeConfig(tuple(reversed(parts)), tmp_path / "merged", progress=False))
    assert summary.skipped == [("episode_3.hdf5", summary.skipped[0][1])]
    single, merged = digests(tmp_path / "single"), digests(tmp_path / "merged")
    assert len(single) > 4  # several train shards, a val shard, stats, manifest
    assert merged == single


def test_merge_refuses_a_missing_part(episodes: Path, tmp_path: Path) -> None:
    parts = convert_parts(episodes, tmp_path, 3)
    with pytest.raises(ConfigError, match="missing"):
        merge(MergeConfig(tuple(parts[:2]), tmp_path / "merged", progress=False))
    assert not (tmp_path / "merged").exists()


def test_merge_refuses_parts_made_with_other_options(episodes: Path, tmp_path: Path) -> None:
    run_convert(episodes, tmp_path / "p1", part=(1, 2), seed=1)
    run_convert(episodes, tmp_path / "p2", part=(2, 2), seed=2)
    with pytest.raises(ConfigError, match="other options"):
        merge(MergeConfig((tmp_path / "p1", tmp_path / "p2"), tmp_path / "m", progress=False))


def test_the_ray_command_with_convert_options_equals_one_machine(episodes: Path, tmp_path: Path):
    ray = pytest.importorskip("ray")
    from pipeline.ray_convert import main as ray_main

    options = ["--val-episodes", "2", "--seed", "5", "--image-size", "32", "--chunk", "4",
               "--shard-samples", "10", "--cameras", "head,left_wrist", "--quiet"]  # fmt: skip
    single = CliRunner().invoke(data_main, ["convert", str(episodes), str(tmp_path / "single"),
                                            *options, "--workers", "1"])  # fmt: skip
    assert single.exit_code == 0, single.output

    def via_ray(out: str, *more: str):
        args = [str(episodes), str(tmp_path / out), "--parts", "2", *options, *more]
        return CliRunner().invoke(ray_main, args)

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        result = via_ray("viaray", "--scratch", str(tmp_path / "scratch"))
        strict = via_ray("strict", "--strict")
    finally:
        ray.shutdown()
    assert result.exit_code == 0, result.output
    # The same summary as the one-machine conversion's, but for the folder.
    first = result.stdout.splitlines()[0]
    assert first.replace("viaray", "single") == single.stdout.splitlines()[0]
    assert digests(tmp_path / "viaray") == digests(tmp_path / "single")
    assert not (tmp_path / "scratch").exists()
    # A part's user error is the user's one line, not the task's traceback.
    assert strict.exit_code == 1 and "Traceback" not in strict.output, strict.output
    assert not (tmp_path / "strict").exists()
    assert strict.output.startswith("Error: --strict: 1 bad episode(s), nothing written")
