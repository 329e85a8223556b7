"""Evaluate a policy in the simulator: seeded episodes -> eval_info.json and videos."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sim.records import VideoSink, eval_info, write_json
from sim.rollout import SimPolicy, StepSink, rollouts
from sim.scripted import ScriptedPolicy, ZeroPolicy
from sim.world import SimError, World, env_spec

BUILTIN_POLICIES = ("scripted", "zero")
EVAL_INFO = "eval_info.json"


@dataclass
class EvalConfig:
    """Which task, how many episodes, how they run, and where the results go."""

    env: str
    """One of sim.world.ENVS, e.g. aloha-transfer-cube."""
    out_dir: Path
    """Gets eval_info.json and videos/eval_episode_{i}.mp4; must not hold an evaluation."""
    episodes: int = 10
    seed: int = 0
    """Episode i resets with seed + i, so a seed names the same object placements everywhere."""
    max_steps: int = 400
    """Steps before an episode counts as failed (gym-aloha stops at 300; ACT and LeRobot
    evaluate these tasks at 400)."""
    execute_steps: int | None = None
    """Actions of each answered chunk run open-loop before the next query; None: all."""
    videos: int = 2
    """Episodes, from the first, recorded as mp4."""

    def __post_init__(self) -> None:
        env_spec(self.env)
        self.out_dir = Path(self.out_dir)
        for option, value in (("--episodes", self.episodes), ("--max-steps", self.max_steps)):
            if value < 1:
                raise SimError(f"{option} must be at least 1, got {value}")
        if self.execute_steps is not None and self.execute_steps < 1:
            raise SimError(f"--execute-steps must be at least 1, got {self.execute_steps}")
        if self.videos < 0:
            raise SimError(f"--videos must not be negative, got {self.videos}")
        if (self.out_dir / EVAL_INFO).exists():
            raise SimError(
                f"--out {self.out_dir}: already holds an evaluation ({EVAL_INFO}); "
                "choose another folder or remove it"
            )


def builtin_policy(name: str, world: World) -> SimPolicy:
    """`scripted` (the task's script) or `zero` (all joint targets 0, grippers closed)."""
    if name == "scripted":
        return ScriptedPolicy(world.name, world.physics.model.ptr)
    if name == "zero":
        return ZeroPolicy()
    raise SimError(
        f"--policy: unknown built-in policy {name!r}; choose {', '.join(BUILTIN_POLICIES)}"
    )


def evaluate(cfg: EvalConfig, world: World, policy: SimPolicy, name: str) -> dict[str, Any]:
    """Run cfg.episodes seeded episodes of `policy`; write and return eval_info."""
    videos = [
        Path("videos") / f"eval_episode_{i}.mp4" for i in range(min(cfg.videos, cfg.episodes))
    ]
    if videos:
        (cfg.out_dir / "videos").mkdir(parents=True, exist_ok=True)
    cfg.out_dir.mkdir(parents=True, exist_ok=True)

    def sink_for(ix: int) -> StepSink | None:
        return VideoSink(cfg.out_dir / videos[ix]) if ix < len(videos) else None

    seeds = [cfg.seed + i for i in range(cfg.episodes)]
    start = time.perf_counter()
    results = list(
        rollouts(
            world, policy, seeds, cfg.max_steps, cfg.execute_steps, sink_for, f"{cfg.env} {name}"
        )
    )
    setup = {"policy": name, **asdict(cfg), "out_dir": str(cfg.out_dir)}
    info = eval_info(results, time.perf_counter() - start, [str(v) for v in videos], setup)
    write_json(cfg.out_dir / EVAL_INFO, info)
    return info


def summary(info: dict[str, Any]) -> str:
    """One line: successes, rate and mean max reward."""
    agg, episodes = info["aggregated"], info["per_episode"]
    wins = sum(e["success"] for e in episodes)
    return (
        f"{info['setup']['env']} {info['setup']['policy']}: {wins}/{len(episodes)} succeeded "
        f"({agg['pc_success']:.1f}%), mean max reward {agg['avg_max_reward']:.2f}, "
        f"{agg['eval_ep_s']:.1f} s per episode"
    )
