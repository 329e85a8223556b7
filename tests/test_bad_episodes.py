"""One bad episode is that episode's skip reason, whatever went wrong; the rest converts."""

from __future__ import annotations

import os

import h5py
import pytest
from episode_fixtures import make_episodes, read_split, run_convert

from pipeline.config import ConfigError, PlanConfig
from pipeline.episodes import MAX_INSTRUCTION_CHARS


def _skipped(summary) -> dict[str, str]:
    return dict(summary.skipped)


def _set_instruction(path, data: bytes) -> None:
    with h5py.File(path, "r+") as f:
        del f["seen"]
        f["seen"] = [data]


def test_a_non_utf8_instruction_skips_only_its_episode(tmp_path):
    paths = make_episodes(tmp_path / "in", episodes=3, steps=4)
    _set_instruction(paths[1], b"pick up the \xff\xfe cup")
    summary = run_convert(tmp_path / "in", tmp_path / "out", val_episodes=0)
    reason = _skipped(summary)["episode_1.hdf5"]
    assert "not valid UTF-8" in reason and "\n" not in reason
    assert len(read_split(tmp_path / "out", "train")) == 8


def test_an_unreadable_file_skips_only_its_episode(tmp_path, monkeypatch):
    paths = make_episodes(tmp_path / "in", episodes=3, steps=4)
    paths[2].chmod(0)
    if os.geteuid() == 0:
        # root reads any file: fail the first read of it as it fails for everyone else
        import pipeline.plan

        real = pipeline.plan.file_sha256

        def denied(path):
            if path == paths[2]:
                raise PermissionError(13, "Permission denied", str(path))
            return real(path)

        monkeypatch.setattr(pipeline.plan, "file_sha256", denied)
    try:
        summary = run_convert(tmp_path / "in", tmp_path / "out", val_episodes=0)
    finally:
        paths[2].chmod(0o644)
    skipped = _skipped(summary)
    assert list(skipped) == ["episode_2.hdf5"] and "Permission denied" in skipped["episode_2.hdf5"]
    assert len(read_split(tmp_path / "out", "train")) == 8


def test_any_exception_while_encoding_is_the_episodes_skip_reason(tmp_path, monkeypatch):
    import pipeline.encode

    make_episodes(tmp_path / "in", episodes=3, steps=4)
    real = pipeline.encode._sample_bytes

    def flaky(job, info, t, jpegs):
        if job.key == "episode_0":
            raise MemoryError("out of memory")
        return real(job, info, t, jpegs)

    monkeypatch.setattr(pipeline.encode, "_sample_bytes", flaky)
    summary = run_convert(tmp_path / "in", tmp_path / "out", val_episodes=0)
    assert _skipped(summary) == {
        "episode_0.hdf5": "failed while encoding: MemoryError: out of memory"
    }


def test_an_instruction_over_the_limit_skips_its_episode(tmp_path):
    paths = make_episodes(tmp_path / "in", episodes=3, steps=4)
    _set_instruction(paths[0], b"x" * (MAX_INSTRUCTION_CHARS + 1))
    _set_instruction(paths[1], b"y" * MAX_INSTRUCTION_CHARS)
    summary = run_convert(tmp_path / "in", tmp_path / "out", val_episodes=0)
    assert _skipped(summary) == {
        "episode_0.hdf5": f"an instruction has {MAX_INSTRUCTION_CHARS + 1} characters, "
        f"over the limit of {MAX_INSTRUCTION_CHARS}"
    }


def test_an_instruction_option_over_the_limit_is_refused_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="--instruction has 2001 characters, over the limit"):
        PlanConfig(tmp_path / "missing", instruction="z" * 2001)
