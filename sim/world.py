"""gym-aloha's bimanual tasks, built so that a step renders only the cameras someone reads."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from dm_control import mujoco
from dm_control.rl import control
from gym_aloha.constants import ASSETS_DIR, DT
from gym_aloha.tasks import sim as aloha_tasks
from gym_aloha.utils import sample_box_pose, sample_insertion_pose

from common.errors import UserError

HEIGHT, WIDTH = 480, 640  # gym-aloha's `top` observation; fixed inside its tasks
CAMERAS = ("top", "angle", "front_close", "left_pillar", "right_pillar")
FPS = round(1 / DT)
SUCCESS_REWARD = 4  # both tasks: 4 is their last stage, and gym-aloha ends the episode there
ACTION_DIM = 14  # per arm: 6 joint targets (rad) + gripper 0 closed .. 1 open


class SimError(UserError):
    """A simulator option that cannot work."""


def _render_only(task_class: type) -> type:
    """The task with an observation that renders only `cameras` (gym-aloha's renders three
    480x640 views with 4096-px shadows every step, almost all of a step's time)."""

    class RenderOnly(task_class):
        def __init__(self, cameras: tuple[str, ...]) -> None:
            super().__init__()
            self.cameras = cameras

        def get_observation(self, physics: Any) -> collections.OrderedDict:
            obs = collections.OrderedDict()
            obs["qpos"] = self.get_qpos(physics)
            obs["qvel"] = self.get_qvel(physics)
            obs["env_state"] = self.get_env_state(physics)
            # The same call gym-aloha makes, so a camera's pixels are the ones it would give.
            obs["images"] = {
                c: physics.render(height=HEIGHT, width=WIDTH, camera_id=c) for c in self.cameras
            }
            return obs

    RenderOnly.__name__ = f"RenderOnly{task_class.__name__}"
    return RenderOnly


@dataclass(frozen=True)
class EnvSpec:
    """One of gym-aloha's tasks as this project names it."""

    task: str
    xml: str
    task_class: type
    instruction: str
    """What a language-conditioned policy is told (and what generated episodes record)."""


ENVS = {
    "aloha-transfer-cube": EnvSpec(
        "transfer_cube",
        "bimanual_viperx_transfer_cube.xml",
        _render_only(aloha_tasks.TransferCubeTask),
        "transfer the cube",
    ),
    "aloha-insertion": EnvSpec(
        "insertion",
        "bimanual_viperx_insertion.xml",
        _render_only(aloha_tasks.InsertionTask),
        "insert the peg into the socket",
    ),
}


def env_spec(name: str) -> EnvSpec:
    if name not in ENVS:
        raise SimError(f"--env: unknown environment {name!r}; choose one of {', '.join(ENVS)}")
    return ENVS[name]


def check_cameras(cameras: tuple[str, ...]) -> tuple[str, ...]:
    unknown = [c for c in cameras if c not in CAMERAS]
    if unknown:
        raise SimError(
            f"--cameras: the simulator has no camera {', '.join(unknown)}; "
            f"it has {', '.join(CAMERAS)}"
        )
    return tuple(cameras)


@dataclass
class Observation:
    """What the world shows after a reset or a step (gym-aloha's raw observation)."""

    qpos: np.ndarray
    """(14,) joints and normalized grippers, left arm then right: the robot state."""
    qvel: np.ndarray
    env_state: np.ndarray
    """The objects' free-joint poses: privileged, for scripted policies only."""
    step: int = 0
    """Steps taken since the reset."""
    images: dict[str, np.ndarray] = field(default_factory=dict)
    """(480, 640, 3) uint8 per camera rendered."""


class World:
    """One simulated task; `reset(seed)` places the objects as gym-aloha's `reset(seed=)` does."""

    def __init__(self, env: str, cameras: tuple[str, ...] = ()) -> None:
        self.name = env
        self.spec = env_spec(env)
        self.cameras = check_cameras(cameras)
        physics = mujoco.Physics.from_xml_path(str(ASSETS_DIR / self.spec.xml))
        # An endless time limit: the rollout counts steps, as gym's TimeLimit would.
        self._env = control.Environment(
            physics,
            self.spec.task_class(self.cameras),
            time_limit=float("inf"),
            control_timestep=DT,
            flat_observation=False,
        )

    @property
    def physics(self) -> Any:
        return self._env.physics

    def render(self, cameras: tuple[str, ...]) -> None:
        """Render these cameras from the next reset or step on (none: physics only)."""
        self.cameras = check_cameras(cameras)
        self._env.task.cameras = self.cameras

    def reset(self, seed: int) -> Observation:
        task = self._env.task
        task.random.seed(seed)
        # gym-aloha passes the pose through this module-level slot; so do we, with its samplers.
        if self.spec.task == "transfer_cube":
            aloha_tasks.BOX_POSE[0] = sample_box_pose(seed)
        else:
            aloha_tasks.BOX_POSE[0] = np.concatenate(sample_insertion_pose(seed))
        self._steps = 0
        return _observation(self._env.reset().observation, 0)

    def step(self, action: np.ndarray) -> tuple[Observation, float]:
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (ACTION_DIM,):
            raise ValueError(f"an action is {ACTION_DIM} values, got shape {action.shape}")
        step = self._env.step(action)
        self._steps += 1
        return _observation(step.observation, self._steps), float(step.reward)


def _observation(raw: dict, step: int) -> Observation:
    return Observation(
        qpos=raw["qpos"].copy(),
        qvel=raw["qvel"].copy(),
        env_state=raw["env_state"].copy(),
        step=step,
        images={c: np.ascontiguousarray(img) for c, img in raw["images"].items()},
    )
