"""What `convert` and `merge` may write over: only the old set's own files, never anything else."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from episode_fixtures import file_hashes, leftovers, make_episodes, run_convert

from pipeline.cli import main
from pipeline.convert.merge import MergeConfig, merge
from pipeline.convert.output import OutputError
from shards.format import MANIFEST_FILE
from shards.manifest import read_manifest


@pytest.fixture
def episodes_dir(tmp_path):
    make_episodes(tmp_path / "in", episodes=3, steps=6)
    return tmp_path / "in"


@pytest.fixture
def shard_set(tmp_path, episodes_dir):
    run_convert(episodes_dir, tmp_path / "set", val_episodes=0)
    return tmp_path / "set"


def test_overwrite_refuses_a_set_that_holds_its_own_input(shard_set, episodes_dir):
    shutil.copytree(episodes_dir, shard_set / "eps")
    before = file_hashes(shard_set)
    with pytest.raises(OutputError, match="inside the output folder"):
        run_convert(shard_set / "eps", shard_set, overwrite=True)
    assert file_hashes(shard_set) == before
    assert leftovers(shard_set) == []


def test_the_cli_refuses_it_in_one_line_and_keeps_the_episodes(shard_set, episodes_dir):
    shutil.copytree(episodes_dir, shard_set / "eps")
    before = file_hashes(shard_set)
    args = ["convert", str(shard_set / "eps"), str(shard_set), "--overwrite", "--quiet"]
    result = CliRunner().invoke(main, [*args, "--workers", "1", "--image-size", "32"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {shard_set / 'eps'}"), result.output
    assert file_hashes(shard_set) == before


@pytest.mark.parametrize("extra", ["notes.txt", ".hidden", "sub/data.bin", "train-000000.tar.bak"])
def test_overwrite_refuses_files_the_manifest_does_not_list(shard_set, episodes_dir, extra):
    (shard_set / extra).parent.mkdir(parents=True, exist_ok=True)
    (shard_set / extra).write_text("mine")
    before = file_hashes(shard_set)
    first = extra.split("/")[0]
    with pytest.raises(OutputError, match=f"{first}.*not part of the shard set"):
        run_convert(episodes_dir, shard_set, overwrite=True, chunk=4)
    assert file_hashes(shard_set) == before
    assert leftovers(shard_set) == []


def test_overwrite_refuses_a_folder_named_like_one_of_the_sets_files(shard_set, episodes_dir):
    (shard_set / "stats.json").unlink()
    (shard_set / "stats.json").mkdir()
    (shard_set / "stats.json" / "keep.txt").write_text("mine")
    with pytest.raises(OutputError, match="stats.json.*not part of the shard set"):
        run_convert(episodes_dir, shard_set, overwrite=True)
    assert (shard_set / "stats.json" / "keep.txt").read_text() == "mine"


def test_a_file_added_during_the_conversion_is_never_deleted(shard_set, episodes_dir, monkeypatch):
    import pipeline.convert.stages

    write_shards = pipeline.convert.stages.write_shards

    def write_and_add(*args, **kwargs):
        (shard_set / "late.txt").write_text("mine")
        return write_shards(*args, **kwargs)

    monkeypatch.setattr(pipeline.convert.stages, "write_shards", write_and_add)
    before = file_hashes(shard_set)
    with pytest.raises(OutputError, match="late.txt"):
        run_convert(episodes_dir, shard_set, overwrite=True, chunk=4)
    assert (shard_set / "late.txt").read_text() == "mine"
    (shard_set / "late.txt").unlink()
    assert file_hashes(shard_set) == before
    assert leftovers(shard_set) == []


def test_overwrite_through_a_symlink_replaces_the_real_folder(tmp_path, shard_set, episodes_dir):
    link = tmp_path / "link"
    link.symlink_to(shard_set)
    summary = run_convert(episodes_dir, link, overwrite=True, val_episodes=0, chunk=4)
    assert link.is_symlink() and link.resolve() == shard_set.resolve()
    assert read_manifest(shard_set).chunk == 4 == summary.manifest.chunk
    assert leftovers(link) == [] and leftovers(shard_set) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "link", "set"]


def test_a_symlinked_output_with_foreign_files_is_refused(tmp_path, shard_set, episodes_dir):
    shutil.copytree(episodes_dir, shard_set / "eps")
    link = tmp_path / "link"
    link.symlink_to(shard_set)
    before = file_hashes(shard_set)
    with pytest.raises(OutputError, match="inside the output folder"):
        run_convert(link / "eps", link, overwrite=True)
    with pytest.raises(OutputError, match="not part of the shard set"):
        run_convert(episodes_dir, link, overwrite=True)
    assert file_hashes(shard_set) == before
    assert link.is_symlink() and leftovers(link) == [] and leftovers(shard_set) == []


def test_a_dangling_symlink_is_refused(tmp_path, episodes_dir):
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "gone")
    with pytest.raises(OutputError, match="symbolic link"):
        run_convert(episodes_dir, link)
    assert not (tmp_path / "gone").exists()


def test_an_output_inside_the_input_folder_is_fine(tmp_path, shard_set, episodes_dir):
    # Only an input inside the output is refused; the reverse deletes nothing.
    summary = run_convert(episodes_dir, episodes_dir / "shards", val_episodes=0)
    assert summary.manifest.samples("train") == 18


@pytest.fixture
def parts(tmp_path):
    make_episodes(tmp_path / "eps", episodes=4, steps=5)
    found = [tmp_path / f"part{i}" for i in (1, 2)]
    for i, part in enumerate(found, start=1):
        run_convert(tmp_path / "eps", part, part=(i, 2))
    return found


def test_merge_refuses_to_write_over_one_of_its_parts(parts):
    before = file_hashes(parts[0])
    with pytest.raises(OutputError, match="inside the output folder"):
        merge(MergeConfig(tuple(parts), parts[0], overwrite=True, progress=False))
    assert file_hashes(parts[0]) == before
    assert leftovers(parts[0]) == []


def test_merge_refuses_a_target_with_foreign_files(tmp_path, parts):
    out = tmp_path / "merged"
    merge(MergeConfig(tuple(parts), out, progress=False))
    (out / "notes.txt").write_text("mine")
    before = file_hashes(out)
    with pytest.raises(OutputError, match="notes.txt"):
        merge(MergeConfig(tuple(parts), out, overwrite=True, progress=False))
    assert file_hashes(out) == before
    merged = read_manifest(out)
    (out / "notes.txt").unlink()
    merge(MergeConfig(tuple(parts), out, overwrite=True, progress=False))
    assert read_manifest(out) == merged and (out / MANIFEST_FILE).is_file()


def test_scale_out_removes_only_its_own_parts_from_the_scratch_folder(tmp_path, parts):
    from pipeline.convert.ray_job import remove_parts

    (tmp_path / "notes.txt").write_text("mine")
    remove_parts(tmp_path, parts)
    assert not any(p.exists() for p in parts)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_scale_out_removes_the_scratch_folder_its_parts_leave_empty(tmp_path, parts):
    from pipeline.convert.ray_job import remove_parts

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    moved = [shutil.move(p, scratch / p.name) for p in parts]
    remove_parts(scratch, moved)
    assert not scratch.exists()


def _gone_pid() -> int:
    """The id of a process that has already ended."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_a_stale_partial_folder_of_a_killed_convert_is_removed_saying_so(
    tmp_path, episodes_dir, caplog
):
    stale = tmp_path / f".set.partial-{_gone_pid()}"
    (stale / "spool").mkdir(parents=True)
    (stale / "spool" / "000000.bin").write_bytes(b"x" * 1000)
    with subprocess.Popen(["sleep", "60"]) as alive:
        running = tmp_path / f".set.partial-{alive.pid}"  # another convert still at work
        running.mkdir()
        caplog.set_level(logging.WARNING)
        run_convert(episodes_dir, tmp_path / "set", val_episodes=0)
        alive.kill()
    assert not stale.exists() and running.is_dir()
    assert f"removed {stale}, left by a conversion that no longer runs" in caplog.text


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended; only its exit status waits to be read


SLOW_CONVERT = """
import os, sys, time
from pathlib import Path
import pipeline.convert.probe
from pipeline.cli import main

def stuck(path):  # a worker busy for minutes: it must still end with its parent
    Path(sys.argv[1], str(os.getpid())).touch()
    time.sleep(300)

pipeline.convert.probe.file_sha256 = stuck
main(["convert", sys.argv[2], sys.argv[3], "--workers", "2", "--quiet"])
"""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_workers_end_when_a_convert_is_killed(tmp_path, episodes_dir, deadline):
    pids = tmp_path / "pids"
    pids.mkdir()
    convert = subprocess.Popen(
        [sys.executable, "-c", SLOW_CONVERT, str(pids), str(episodes_dir), str(tmp_path / "set")]
    )
    while len(list(pids.iterdir())) < 2:
        assert convert.poll() is None, "the convert ended before its workers started"
        time.sleep(0.05)
    workers = [int(p.name) for p in pids.iterdir()]
    convert.send_signal(signal.SIGKILL)
    convert.wait()
    end = time.monotonic() + 10
    while any(map(_alive, workers)) and time.monotonic() < end:
        time.sleep(0.1)
    left = [pid for pid in workers if _alive(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert left == []
