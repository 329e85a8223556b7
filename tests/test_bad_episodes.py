"""One bad episode is that episode's skip reason, whatever went wrong; the rest converts."""

from __future__ import annotations

import os

import h5py
import pytest
from click.testing import CliRunner
from episode_fixtures import make_episodes, read_split, run_convert

from common.errors import ConfigError
from pipeline.cli import main as vla_data
from pipeline.config import PlanConfig
from pipeline.convert.stages import ConvertError
from pipeline.inputs.layout import MAX_INSTRUCTION_CHARS


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
        import pipeline.convert.probe

        real = pipeline.convert.probe.file_sha256

        def denied(path):
            if path == paths[2]:
                raise PermissionError(13, "Permission denied", str(path))
            return real(path)

        monkeypatch.setattr(pipeline.convert.probe, "file_sha256", denied)
    try:
        summary = run_convert(tmp_path / "in", tmp_path / "out", val_episodes=0)
    finally:
        paths[2].chmod(0o644)
    skipped = _skipped(summary)
    assert list(skipped) == ["episode_2.hdf5"] and "Permission denied" in skipped["episode_2.hdf5"]
    assert len(read_split(tmp_path / "out", "train")) == 8


def test_any_exception_while_encoding_is_the_episodes_skip_reason(tmp_path, monkeypatch):
    import pipeline.convert.encode

    make_episodes(tmp_path / "in", episodes=3, steps=4)
    real = pipeline.convert.encode._sample_bytes

    def flaky(job, info, t, jpegs):
        if job.key == "episode_0":
            raise MemoryError("out of memory")
        return real(job, info, t, jpegs)

    monkeypatch.setattr(pipeline.convert.encode, "_sample_bytes", flaky)
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


def _drop(path, name: str) -> None:
    with h5py.File(path, "r+") as f:
        del f[name]


def _narrow_actions(path, dims: int) -> None:
    with h5py.File(path, "r+") as f:
        actions = f["action"][()]
        del f["action"]
        f["action"] = actions[:, :dims]


def test_an_episode_lacking_a_camera_the_others_have_is_skipped_not_the_camera(tmp_path):
    paths = make_episodes(tmp_path / "in", episodes=5, steps=4)
    _drop(paths[2], "low_cam_image")
    summary = run_convert(tmp_path / "in", tmp_path / "out", val_episodes=0)
    assert summary.manifest.cameras == ["head", "low", "left_wrist", "right_wrist"]
    assert _skipped(summary) == {
        "episode_2.hdf5": "no camera 'low' (has head, left_wrist, right_wrist)"
    }
    assert summary.decisions == [
        "cameras head,low,left_wrist,right_wrist: each in most of the 5 episodes; "
        "1 episode lacking one skipped (--cameras chooses others)"
    ]
    with pytest.raises(ConvertError, match=r"(?s)--strict: 1 bad.*episode_2.hdf5: no camera"):
        run_convert(tmp_path / "in", tmp_path / "strict", val_episodes=0, strict=True)


def test_a_camera_in_only_a_few_episodes_is_left_out_saying_so(tmp_path):
    paths = make_episodes(tmp_path / "in", episodes=3, steps=4)
    for path in paths[1:]:
        _drop(path, "right_wrist_image")
    summary = run_convert(tmp_path / "in", tmp_path / "out", val_episodes=0)
    assert summary.manifest.cameras == ["head", "low", "left_wrist"] and not summary.skipped
    assert summary.decisions == ["camera right_wrist left out: only in 1 of 3 episodes"]
    with pytest.raises(ConvertError, match="--strict: camera right_wrist left out"):
        run_convert(tmp_path / "in", tmp_path / "strict", val_episodes=0, strict=True)


def test_the_action_dimension_is_the_majoritys_not_the_first_episodes(tmp_path):
    paths = make_episodes(tmp_path / "in", episodes=4, steps=4)
    _narrow_actions(paths[0], 12)
    summary = run_convert(tmp_path / "in", tmp_path / "out", val_episodes=0)
    assert summary.manifest.action_dim == 14
    assert _skipped(summary) == {
        "episode_0.hdf5": "action has 12 dims but episode_1.hdf5 has 14, like 3 of 4 episodes"
    }
    assert summary.decisions == [
        "action dim 14: the majority, 3 of 4 episodes; 1 with another skipped (--action-dim "
        "chooses another)"
    ]
    with pytest.raises(ConvertError, match="--strict: 1 bad episode"):
        run_convert(tmp_path / "in", tmp_path / "strict", val_episodes=0, strict=True)


def test_action_dim_option_chooses_the_episodes_to_keep(tmp_path):
    paths = make_episodes(tmp_path / "in", episodes=4, steps=4)
    _narrow_actions(paths[0], 12)
    summary = run_convert(tmp_path / "in", tmp_path / "out", val_episodes=0, action_dim=12)
    assert summary.manifest.action_dim == 12
    assert summary.manifest.options["action_dim"] == 12
    assert set(_skipped(summary)) == {"episode_1.hdf5", "episode_2.hdf5", "episode_3.hdf5"}
    assert _skipped(summary)["episode_1.hdf5"] == "action has 14 dims but --action-dim is 12"
    with pytest.raises(ConfigError, match="--action-dim must be at least 1"):
        PlanConfig(tmp_path / "in", action_dim=0)


def test_the_convert_summary_says_what_was_decided(tmp_path):
    paths = make_episodes(tmp_path / "in", episodes=4, steps=4)
    _narrow_actions(paths[3], 12)
    result = CliRunner().invoke(
        vla_data,
        ["convert", str(tmp_path / "in"), str(tmp_path / "out"), "--quiet", "--workers", "1",
         "--image-size", "32", "--val-episodes", "0"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "decided: action dim 14: the majority, 3 of 4 episodes" in result.stdout
