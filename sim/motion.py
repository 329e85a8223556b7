"""Gripper poses in time -> joint targets: interpolate between keyframes, solve each step."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import mujoco
import numpy as np

from sim.kinematics import Solver


@dataclass(frozen=True)
class Pose:
    """Where one gripper should be: pinch point, rotation, and opening."""

    point: np.ndarray
    """Pinch point (kinematics.PINCH) in world coordinates, metres."""
    rot: np.ndarray
    """(3, 3) rotation: columns are the pointing, finger-closing and third axes."""
    grip: float
    """0 closed .. 1 open, as the environment's gripper action."""

    def moved(
        self,
        point: np.ndarray | None = None,
        rot: np.ndarray | None = None,
        grip: float | None = None,
    ) -> Pose:
        return Pose(
            self.point if point is None else np.asarray(point, dtype=float),
            self.rot if rot is None else rot,
            self.grip if grip is None else grip,
        )


SOLVE_EVERY = 5  # steps between inverse-kinematics solves (0.1 s at 50 Hz)

Keyframe = tuple[int, Pose]  # (step from the phase's start at which the pose is reached, pose)


def _quat(rot: np.ndarray) -> np.ndarray:
    q = np.zeros(4)
    mujoco.mju_mat2Quat(q, np.ascontiguousarray(rot).ravel())
    return q


def _mat(quat: np.ndarray) -> np.ndarray:
    m = np.zeros(9)
    mujoco.mju_quat2Mat(m, quat)
    return m.reshape(3, 3)


def slerp(q0: np.ndarray, q1: np.ndarray, s: float) -> np.ndarray:
    """Unit quaternion a fraction `s` of the shorter way from q0 to q1."""
    dot = float(q0 @ q1)
    if dot < 0:
        q1, dot = -q1, -dot
    if dot > 0.9995:  # nearly equal: the linear blend is exact enough and avoids 0/0
        q = q0 + s * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = np.arccos(dot)
    return (np.sin((1 - s) * theta) * q0 + np.sin(s * theta) * q1) / np.sin(theta)


def pose_at(keys: Sequence[Keyframe], t: float) -> Pose:
    """The pose at step `t`: straight lines between keyframes, held after the last."""
    for (ta, a), (tb, b) in zip(keys, keys[1:], strict=False):  # consecutive pairs
        if t < tb:
            s = float(np.clip((t - ta) / (tb - ta), 0.0, 1.0))
            return Pose(
                a.point + s * (b.point - a.point),
                _mat(slerp(_quat(a.rot), _quat(b.rot), s)),
                a.grip + s * (b.grip - a.grip),
            )
    return keys[-1][1]


def track(
    solver: Solver, side: str, q0: np.ndarray, keys: Sequence[Keyframe], steps: int
) -> np.ndarray:
    """(steps, 7) actions for one arm (six joints, gripper) following `keys`.

    Action t aims at the pose of step t + 1: the controller reaches a target a step after it
    is set. The arm is solved every SOLVE_EVERY steps (each solve starting from the last, so
    it never jumps between branches) and the joints interpolated in between: over 0.1 s the
    joint-space path strays from the straight one by far less than a millimetre.
    """
    solved = sorted({*range(0, steps, SOLVE_EVERY), steps - 1})
    joints = np.zeros((len(solved), 6))
    q = np.asarray(q0, dtype=float)
    for i, t in enumerate(solved):
        pose = pose_at(keys, t + 1)
        joints[i] = q = solver.solve(side, pose.point, pose.rot, q)
    out = np.zeros((steps, 7))
    for j in range(6):
        out[:, j] = np.interp(np.arange(steps), solved, joints[:, j])
    out[:, 6] = [pose_at(keys, t + 1).grip for t in range(steps)]
    return out
