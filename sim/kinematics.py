"""Inverse kinematics for the ALOHA arms: a gripper pose -> the arm's six joint angles."""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

ARM_JOINTS = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate")
# Along the gripper's pointing axis, from gripper_link to where a pinch holds an object:
# the finger pads span 0.064..0.154 m there (measured on the finger meshes).
PINCH = np.array([0.13, 0.0, 0.0])
DAMPING = 1e-4  # damped least squares: keeps steps finite near singular poses


def frame(pointing: np.ndarray, closing: np.ndarray) -> np.ndarray:
    """A gripper's rotation matrix from the direction it points and the axis its fingers
    close along (made orthogonal to the first)."""
    x = np.asarray(pointing, dtype=float)
    x = x / np.linalg.norm(x)
    y = np.asarray(closing, dtype=float)
    y = y - x * (x @ y)
    y = y / np.linalg.norm(y)
    return np.column_stack([x, y, np.cross(x, y)])


@dataclass
class Arm:
    """One arm of the model: its gripper body and its six joints' qpos / dof addresses."""

    body: int
    qpos: np.ndarray
    dofs: np.ndarray
    low: np.ndarray
    high: np.ndarray

    @classmethod
    def of(cls, model: mujoco.MjModel, side: str) -> Arm:
        joints = [model.joint(f"vx300s_{side}/{name}") for name in ARM_JOINTS]
        return cls(
            body=model.body(f"vx300s_{side}/gripper_link").id,
            qpos=np.array([j.qposadr[0] for j in joints]),
            dofs=np.array([j.dofadr[0] for j in joints]),
            low=np.array([j.range[0] for j in joints]),
            high=np.array([j.range[1] for j in joints]),
        )


class Solver:
    """Damped least squares on a scratch copy of the model's state (the world is untouched)."""

    def __init__(self, model: mujoco.MjModel) -> None:
        self.model = model
        self.data = mujoco.MjData(model)
        self.arms = {side: Arm.of(model, side) for side in ("left", "right")}

    def pinch(self, side: str, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pinch point and gripper rotation for joint angles `q` (forward kinematics)."""
        arm = self.arms[side]
        self.data.qpos[arm.qpos] = q
        mujoco.mj_kinematics(self.model, self.data)
        rot = self.data.xmat[arm.body].reshape(3, 3)
        return self.data.xpos[arm.body] + rot @ PINCH, rot.copy()

    def solve(
        self, side: str, point: np.ndarray, rot: np.ndarray, q0: np.ndarray, iters: int = 30
    ) -> np.ndarray:
        """Joint angles that put the pinch point at `point` with rotation `rot`, from `q0`."""
        arm = self.arms[side]
        q = np.array(q0, dtype=float)
        jacp, jacr = np.zeros((3, self.model.nv)), np.zeros((3, self.model.nv))
        for _ in range(iters):
            here, now = self.pinch(side, q)
            # Orientation error as a rotation vector in the world frame.
            turn = rot @ now.T
            angle = np.arccos(np.clip((np.trace(turn) - 1) / 2, -1, 1))
            axis = np.array(
                [turn[2, 1] - turn[1, 2], turn[0, 2] - turn[2, 0], turn[1, 0] - turn[0, 1]]
            )
            norm = np.linalg.norm(axis)
            spin = axis / norm * angle if norm > 1e-9 else np.zeros(3)
            error = np.concatenate([point - here, spin])
            if np.linalg.norm(error) < 1e-5:
                break
            mujoco.mj_comPos(self.model, self.data)
            mujoco.mj_jac(self.model, self.data, jacp, jacr, here, arm.body)
            jac = np.vstack([jacp[:, arm.dofs], jacr[:, arm.dofs]])
            step = jac.T @ np.linalg.solve(jac @ jac.T + DAMPING * np.eye(6), error)
            q = np.clip(q + step, arm.low, arm.high)
        return q
