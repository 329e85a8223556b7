"""The simulator harness against gym-aloha itself: the scripted policies succeed, a zero policy
fails, episodes repeat for a seed, pixels match the stock environment's, videos decode."""

from __future__ import annotations

import json
import subprocess
import sys

import av
import gym_aloha  # noqa: F401  (registers the gym ids)
import gymnasium as gym
import numpy as np
import pytest

from sim.evaluate import EVAL_INFO, EvalConfig, builtin_policy, evaluate
from sim.rollout import EpisodeResult, run_episode
from sim.scripted import ScriptedPolicy, ZeroPolicy
from sim.world import SimError, World

TRANSFER, INSERTION = "aloha-transfer-cube", "aloha-insertion"


class Trace:
    """A sink keeping what an episode did."""

    def __init__(self) -> None:
        self.qpos, self.actions, self.ended = [], [], False

    def step(self, obs, action) -> None:
        self.qpos.append(obs.qpos)
        self.actions.append(np.array(action))

    def end(self, obs) -> None:
        self.ended = True

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def worlds():
    return {env: World(env) for env in (TRANSFER, INSERTION)}


def _scripted(world, seed, max_steps=300, execute_steps=None, sink=None):
    policy = ScriptedPolicy(world.name, world.physics.model.ptr)
    world.render(())
    return run_episode(world, policy, EpisodeResult(0, seed), max_steps, execute_steps, sink)


@pytest.mark.parametrize(("env", "seed"), [(TRANSFER, 0), (TRANSFER, 11), (INSERTION, 5)])
def test_scripted_policy_succeeds(worlds, env, seed):
    result = _scripted(worlds[env], seed)
    assert result.success and result.max_reward == 4
    assert result.rewards[-1] == 4 and len(result.rewards) < 300  # success ends the episode


def test_zero_policy_fails(worlds):
    world = worlds[TRANSFER]
    result = run_episode(world, ZeroPolicy(), EpisodeResult(0, 0), 100)
    assert not result.success and result.max_reward == 0 and len(result.rewards) == 100


def test_an_episode_repeats_for_its_seed_whatever_the_chunking(worlds):
    world = worlds[TRANSFER]
    runs = []
    for execute_steps in (None, 7, None):
        trace = Trace()
        _scripted(world, 3, max_steps=150, execute_steps=execute_steps, sink=trace)
        runs.append(trace)
    assert trace.ended and len(runs[0].qpos) == 150
    for other in runs[1:]:
        np.testing.assert_array_equal(np.array(runs[0].qpos), np.array(other.qpos))
        np.testing.assert_array_equal(np.array(runs[0].actions), np.array(other.actions))
    elsewhere = Trace()
    _scripted(world, 4, max_steps=150, sink=elsewhere)
    assert not np.array_equal(np.array(elsewhere.actions), np.array(runs[0].actions))


def test_top_camera_pixels_are_the_stock_environments():
    stock = gym.make("gym_aloha/AlohaTransferCube-v0", obs_type="pixels_agent_pos")
    expected, _ = stock.reset(seed=9)
    world = World(TRANSFER, ("top",))
    obs = world.reset(9)
    assert set(obs.images) == {"top"}
    np.testing.assert_array_equal(obs.images["top"], expected["pixels"]["top"])
    np.testing.assert_array_equal(obs.qpos, expected["agent_pos"])
    again = world.reset(9).images["top"]
    np.testing.assert_array_equal(again, obs.images["top"])
    world.render(())
    assert world.reset(9).images == {}


def test_eval_info_layout_and_a_decodable_video(worlds, tmp_path):
    world = worlds[TRANSFER]
    cfg = EvalConfig(TRANSFER, tmp_path / "out", episodes=2, seed=20, max_steps=5, videos=1)
    info = evaluate(cfg, world, builtin_policy("scripted", world), "scripted")
    written = json.loads((cfg.out_dir / EVAL_INFO).read_text())
    assert written == info
    assert [e["seed"] for e in written["per_episode"]] == [20, 21]
    assert set(written["per_episode"][0]) == {
        "episode_ix", "sum_reward", "max_reward", "success", "seed"
    }  # fmt: skip
    assert set(written["aggregated"]) == {
        "avg_sum_reward", "avg_max_reward", "pc_success", "eval_s", "eval_ep_s"
    }  # fmt: skip
    assert written["aggregated"]["pc_success"] == 0.0  # 5 steps cannot reach the cube
    assert written["video_paths"] == ["videos/eval_episode_0.mp4"]
    assert sorted(p.name for p in (cfg.out_dir / "videos").iterdir()) == ["eval_episode_0.mp4"]
    with av.open(str(cfg.out_dir / written["video_paths"][0])) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 6 and frames[0].shape == (480, 640, 3)  # reset + 5 steps
    first = World(TRANSFER, ("top",)).reset(20).images["top"]
    assert np.abs(frames[0].astype(int) - first).mean() < 3  # H.264 is lossy, not wrong
    with pytest.raises(SimError, match="already holds an evaluation"):
        EvalConfig(TRANSFER, cfg.out_dir)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"env": "aloha-cube"}, "--env: unknown environment 'aloha-cube'"),
        ({"execute_steps": 0}, "--execute-steps must be at least 1"),
        ({"episodes": 0}, "--episodes must be at least 1"),
    ],
)
def test_bad_options_are_refused_before_anything_runs(tmp_path, options, message):
    with pytest.raises(SimError, match=message):
        EvalConfig(**{"env": TRANSFER, "out_dir": tmp_path, **options})
    assert not any(tmp_path.iterdir())


def test_the_simulator_then_transformers_in_one_process():
    # Mesa's GL driver loaded before Triton's LLVM used to segfault this import.
    code = "import sim.world; from transformers.models.bloom import modeling_bloom"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
