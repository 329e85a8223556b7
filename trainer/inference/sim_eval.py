"""`vla-train eval`: a checkpoint, or a built-in policy, acting in the ALOHA simulator."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sim.evaluate import BUILTIN_POLICIES, EVAL_INFO, EvalConfig, builtin_policy, evaluate, summary
from sim.world import ACTION_DIM, CAMERAS, Observation, World, env_spec
from trainer.inference.checkpoint_info import CheckpointInfo, read_checkpoint
from trainer.inference.policy import Policy
from trainer.model.oft_files import OftOptions, is_oft_folder
from trainer.run.train_config import ConfigError


@dataclass
class SimEvalConfig:
    """What `vla-train eval` runs: CKPT or a built-in policy, and how the episodes go."""

    run: EvalConfig
    ckpt: Path | None = None
    """A RUN_DIR/step-N folder or an OpenVLA-OFT folder."""
    policy: str | None = None
    """A built-in policy (sim.evaluate.BUILTIN_POLICIES) instead of a checkpoint."""
    cameras: tuple[str, ...] = ()
    """`sim:run` pairs feeding a simulator camera to a camera the policy was trained on
    (`top:head`); a name alone feeds the camera of that name."""
    instruction: str | None = None
    """What the policy is told; default the task's (sim.world.ENVS)."""
    base: str | None = None
    dataset: str | None = None
    device: str = "auto"

    def __post_init__(self) -> None:
        if (self.ckpt is None) == (self.policy is None):
            raise ConfigError("give a checkpoint CKPT or --policy scripted|zero, not both")
        if self.policy is not None:
            if self.policy not in BUILTIN_POLICIES:
                raise ConfigError(
                    f"--policy: no built-in policy {self.policy!r}; "
                    f"choose {', '.join(BUILTIN_POLICIES)}"
                )
            given = [o for o, v in (("--cameras", self.cameras), ("--base", self.base),
                                    ("--dataset", self.dataset)) if v]  # fmt: skip
            if given:
                raise ConfigError(f"{', '.join(given)}: for checkpoints, not --policy")
        self.ckpt = None if self.ckpt is None else Path(self.ckpt)
        self.cameras = tuple(self.cameras)


class CheckpointPolicy:
    """A trained policy as the simulator's rollout asks: simulator frames renamed to the
    run's cameras, the robot state when it was trained with it, one chunk per query."""

    def __init__(self, policy: Policy, feeds: dict[str, str], instruction: str) -> None:
        self.policy, self.feeds, self.instruction = policy, feeds, instruction
        self.cameras = tuple(dict.fromkeys(feeds.values()))
        self.with_state = policy.net.config.proprio_dim > 0

    def reset(self, obs: Observation) -> None:
        pass  # every answer depends on the observation alone

    def act(self, obs: Observation) -> np.ndarray:
        images = {run: obs.images[sim] for run, sim in self.feeds.items()}
        state = obs.qpos if self.with_state else None
        return self.policy.predict(images, self.instruction, state)


def camera_feeds(run_cameras: Sequence[str], given: Sequence[str], source: Path) -> dict:
    """Run camera -> simulator camera. Without --cameras, a run camera named like a simulator
    camera reads it, and a run of one camera reads `top` (ACT's simulated camera)."""
    feeds: dict[str, str] = {}
    for item in given:
        sim, _, run = (part.strip() for part in item.partition(":"))
        if not sim or (":" in item and not run):
            raise ConfigError(f"--cameras: {item!r} needs a name on each side of ':'")
        feeds[run or sim] = sim
    if not given:
        feeds = {c: c for c in run_cameras if c in CAMERAS}
        if len(run_cameras) == 1 and not feeds:
            feeds = {run_cameras[0]: "top"}
    unknown = [c for c in feeds if c not in run_cameras]
    missing = [c for c in run_cameras if c not in feeds]
    if unknown or missing:
        raise ConfigError(
            f"--cameras: {source} takes cameras {', '.join(run_cameras)}; feed each from a "
            f"simulator camera ({', '.join(CAMERAS)}), e.g. --cameras top:{run_cameras[0]}"
        )
    bad = [s for s in feeds.values() if s not in CAMERAS]
    if bad:
        raise ConfigError(f"--cameras: the simulator has no camera {', '.join(bad)}")
    return feeds


def _checkpoint_policy(cfg: SimEvalConfig) -> tuple[CheckpointInfo, dict[str, str]]:
    """Read and check CKPT without building the model: cameras, action width, chunk."""
    oft = None
    if is_oft_folder(cfg.ckpt):
        oft = OftOptions(cameras=tuple(c.partition(":")[2] or c for c in cfg.cameras))
    info = read_checkpoint(cfg.ckpt, oft, cfg.base)
    feeds = camera_feeds(info.run.cameras, cfg.cameras, cfg.ckpt)
    if info.model.action_dim != ACTION_DIM:
        raise ConfigError(
            f"{cfg.ckpt}: predicts {info.model.action_dim}-dim actions; the ALOHA tasks take "
            f"{ACTION_DIM} (two arms of 6 joints and a gripper)"
        )
    if info.model.proprio_dim not in (0, ACTION_DIM):
        raise ConfigError(
            f"{cfg.ckpt}: trained with a {info.model.proprio_dim}-value state; the simulator "
            f"gives {ACTION_DIM} (qpos)"
        )
    steps = cfg.run.execute_steps
    if steps is not None and steps > info.model.chunk:
        raise ConfigError(
            f"--execute-steps {steps}: more than the {info.model.chunk} actions of "
            f"{cfg.ckpt}'s chunks"
        )
    return info, feeds


def evaluate_in_sim(cfg: SimEvalConfig) -> dict[str, Any]:
    """Everything checked before the slow parts start; then the episodes; eval_info back."""
    spec = env_spec(cfg.run.env)
    if cfg.policy is not None:
        world = World(cfg.run.env)
        return evaluate(cfg.run, world, builtin_policy(cfg.policy, world), cfg.policy)
    info, feeds = _checkpoint_policy(cfg)
    world = World(cfg.run.env)
    policy = Policy.from_info(info, cfg.base, cfg.device, cfg.dataset)
    actor = CheckpointPolicy(policy, feeds, cfg.instruction or spec.instruction)
    return evaluate(cfg.run, world, actor, str(cfg.ckpt))


def run_command(options: dict[str, Any]) -> str:
    """`vla-train eval`'s options -> the evaluation; its one-line summary back."""
    names = ("env", "out_dir", "episodes", "seed", "max_steps", "execute_steps", "videos")
    run = EvalConfig(**{name: options.pop(name) for name in names})
    info = evaluate_in_sim(SimEvalConfig(run, **options))
    return f"{summary(info)}; {run.out_dir / EVAL_INFO}"
