"""`vla-data generate --env` -> `vla-data convert` -> a tiny run -> `vla-train eval`, through
the real command lines; and their mistakes as one line."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from pipeline.cli import main as data_main
from trainer.cli import main as train_main
from trainer.run.loop import train
from trainer.run.train_config import TrainConfig

STEPS = 6  # per generated episode: enough to convert and train on, short to render


def invoke(main, *args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line_error(result, fragment):
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: ") and fragment in last, result.output


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """Two generated episodes converted with top:head and trained on for one step."""
    root = tmp_path_factory.mktemp("simeval")
    made = invoke(
        data_main, "generate", root / "episodes", "--env", "aloha-transfer-cube",
        "--episodes", 2, "--steps", STEPS,
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    converted = invoke(
        data_main, "convert", root / "episodes", root / "shards", "--cameras", "top:head",
        "--instruction", "transfer the cube", "--val-episodes", 1, "--chunk", 4,
    )  # fmt: skip
    assert converted.exit_code == 0, converted.output
    assert "cameras head" in converted.output and "train 1 episodes" in converted.output
    cfg = TrainConfig(
        shards=str(root / "shards"), run_dir=root / "run", base="tiny", lora_rank=4,
        device="cpu", workers=0, batch_size=2, max_steps=1, val_every=0, save_every=1,
    )  # fmt: skip
    train(cfg)
    return root, cfg.run_dir / "step-1"


def test_generated_episodes_have_alohas_layout(ckpt):
    root, _ = ckpt
    with h5py.File(root / "episodes" / "episode_0.hdf5", "r") as f:
        assert f.attrs["sim"] == True  # noqa: E712  (numpy bool)
        top = f["observations/images/top"]
        assert top.shape == (STEPS, 480, 640, 3) and top.dtype == np.uint8
        assert top.chunks == (1, 480, 640, 3)
        for name in ("observations/qpos", "observations/qvel", "action"):
            assert f[name].shape == (STEPS, 14), name
        # Row 0 is the reset's state; the scripted policy starts by holding the arms there.
        np.testing.assert_allclose(f["observations/qpos"][0, :6], [0, -0.96, 1.16, 0, -0.3, 0])
        assert top[0].std() > 10  # a rendered scene, not a blank frame


def test_a_tiny_checkpoint_evaluates_end_to_end(ckpt, tmp_path):
    _, step = ckpt
    out = tmp_path / "eval"
    result = invoke(
        train_main, "eval", step, "--env", "aloha-transfer-cube", "--episodes", 2,
        "--max-steps", 5, "--execute-steps", 2, "--videos", 1, "--out", out, "--device", "cpu",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "0/2 succeeded" in result.output
    info = json.loads((out / "eval_info.json").read_text())
    assert [e["seed"] for e in info["per_episode"]] == [0, 1]
    assert info["setup"]["execute_steps"] == 2 and (out / info["video_paths"][0]).stat().st_size


def test_the_scripted_policy_through_the_command_line(tmp_path):
    result = invoke(
        train_main, "eval", "--policy", "scripted", "--env", "aloha-transfer-cube",
        "--episodes", 1, "--seed", 2, "--videos", 0, "--out", tmp_path / "eval",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "1/1 succeeded (100.0%)" in result.output


def test_mistakes_are_one_line(ckpt, tmp_path):
    _, step = ckpt
    out = ("--out", tmp_path / "eval")
    scripted = ("--policy", "scripted")
    transfer = ("--env", "aloha-transfer-cube")
    cases = [
        ((*scripted, "--env", "aloha-cube", *out), "--env: unknown environment 'aloha-cube'"),
        ((*scripted, *transfer, "--execute-steps", 0, *out), "--execute-steps must be at least 1"),
        ((step, *transfer, "--execute-steps", 5, *out), "more than the 4 actions"),
        ((tmp_path / "nowhere", *transfer, *out), "no such checkpoint folder"),
        ((step, *scripted, *transfer, *out), "give a checkpoint CKPT or --policy"),
        ((step, *transfer, "--cameras", "top:wrist", *out), "takes cameras head"),
        ((step, *transfer, "--cameras", "side:head", *out), "the simulator has no camera side"),
        ((*scripted, "--env", "libero-10", *out), "unknown environment 'libero-10'"),
    ]
    for args, fragment in cases:
        assert_one_line_error(invoke(train_main, "eval", *args), fragment)
    assert not (tmp_path / "eval").exists()  # nothing started
    bad_env = invoke(data_main, "generate", tmp_path / "eps", "--env", "aloha-cube")
    assert_one_line_error(bad_env, "--env: unknown environment")
    assert not (tmp_path / "eps").exists()
