"""Built-in scripted policies: each task's grasps and hand-over planned from the objects' poses.

The scripts read the simulator's object poses (privileged state, no pixels), plan the
grippers' pinch points from the tasks' geometry, and turn them into joint targets with
inverse kinematics, so they drive the same joint-space environment a learned policy does.
A script is a list of phases; each phase is planned when it starts, from what the world
shows then, so a grasp that held an object a few millimetres off is corrected before the
precise part (the insertion) begins.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sim.kinematics import Solver, frame
from sim.motion import Keyframe, Pose, track
from sim.world import ACTION_DIM, Observation

SIDES = ("left", "right")
QPOS = {"left": slice(0, 6), "right": slice(7, 13)}  # arm joints in the 14-value state
GRIP = {"left": 6, "right": 13}
OPEN, CLOSED = 1.0, 0.0

CUBE_HALF = 0.02  # transfer cube: the cube's half side
MEET = np.array([0.0, 0.5, 0.25])  # where the right hand offers the cube, above the table middle
HANDOFF_GAP = 0.02  # the left pinch stops this short of the cube's centre (its fingers reach on)
APPROACH = 0.1  # the left hand waits this far back before closing in

PEG_GRASP_Z = 0.028  # pinch heights that put the fingertips 4 mm above the table
SOCKET_GRASP_Z = 0.03
PEG_GRASP_OFFSET = 0.02  # grip the peg toward its far end, so the fingers clear the socket's mouth
LIFT = np.array([0.12, 0.5, 0.2])  # the objects lifted apart: peg at +x, socket at -x
INSERT_AT = np.array([-0.05, 0.5, 0.2])  # socket centre while inserting
TOUCH_GAP = 0.10  # peg centre - socket centre when the peg's end meets the pin (0.06 + 0.04)
ALIGN_GAP = TOUCH_GAP + 0.015
PUSH_GAP = TOUCH_GAP - 0.015

ABOVE = np.array([0.0, 0.0, 0.08])  # approach height over a grasp


def pointing_down(side: str, degrees: float) -> np.ndarray:
    """A gripper pitched `degrees` below horizontal toward the table's middle, fingers closing
    along y (the arms face each other along x)."""
    sign = 1.0 if side == "left" else -1.0
    pitch = np.deg2rad(degrees)
    return frame([sign * np.cos(pitch), 0, -np.sin(pitch)], [0, sign, 0])


@dataclass
class Phase:
    """Keyframes per arm, counted from the phase's start; the arm holds its last one after."""

    steps: int
    keys: dict[str, list[Keyframe]]


Planner = Callable[[Observation, dict[str, Pose]], Phase]


def transfer_cube(obs: Observation, held: dict[str, Pose]) -> Phase:
    """Right hand grasps the cube and lifts it to MEET; the left hand comes in level, turned
    so its fingers close top and bottom, and takes it."""
    cube = np.array([*obs.env_state[:2], CUBE_HALF])
    down = pointing_down("right", 60)
    left_level = frame([1, 0, 0], [0, 0, 1])
    r, left = held["right"], held["left"]
    grasp = r.moved(cube, down, OPEN)
    take = MEET - [HANDOFF_GAP, 0, 0]
    wait = left.moved(take - [APPROACH, 0, 0], left_level, OPEN)
    return Phase(
        300,
        {
            "right": [
                (0, r),
                (60, grasp.moved(cube + ABOVE)),
                (100, grasp),
                (125, grasp.moved(grip=CLOSED)),  # closing slowly lets the cube centre itself
                (135, grasp.moved(grip=CLOSED)),
                (190, grasp.moved(MEET, grip=CLOSED)),
            ],
            "left": [
                (0, left),
                (120, wait),
                (190, wait),
                (230, wait.moved(take)),
                (250, wait.moved(take, grip=CLOSED)),
            ],
        },
    )


def insertion_grasp(obs: Observation, held: dict[str, Pose]) -> Phase:
    """Both hands grasp from straight above (right: peg, left: socket) and lift them apart."""
    peg, socket = obs.env_state[:3], obs.env_state[7:10]
    grasps = {
        "right": held["right"].moved(
            [peg[0] + PEG_GRASP_OFFSET, peg[1], PEG_GRASP_Z], pointing_down("right", 90), OPEN
        ),
        "left": held["left"].moved(
            [socket[0], socket[1], SOCKET_GRASP_Z], pointing_down("left", 90), OPEN
        ),
    }
    lifted = {"right": LIFT + [PEG_GRASP_OFFSET, 0, 0], "left": LIFT * [-1, 1, 1]}
    keys = {}
    for side, grasp in grasps.items():
        keys[side] = [
            (0, held[side]),
            (60, grasp.moved(grasp.point + ABOVE)),
            (100, grasp),
            (125, grasp.moved(grip=CLOSED)),
            (135, grasp.moved(grip=CLOSED)),
            (160, grasp.moved(lifted[side], grip=CLOSED)),
        ]
    return Phase(180, keys)  # the last 20 steps still: the next phase measures at rest


def _bring_together(gap: float, move: int, steps: int) -> Planner:
    """Move socket and peg to INSERT_AT and `gap` beside it, aiming each hand by where its
    object sits in it now (measured, not assumed from the grasp)."""

    def plan(obs: Observation, held: dict[str, Pose]) -> Phase:
        peg, socket = obs.env_state[:3], obs.env_state[7:10]
        targets = {
            "right": INSERT_AT + [gap, 0, 0] + (held["right"].point - peg),
            "left": INSERT_AT + (held["left"].point - socket),
        }
        keys = {s: [(0, held[s]), (move, held[s].moved(targets[s]))] for s in SIDES}
        return Phase(steps, keys)

    return plan


SCRIPTS: dict[str, tuple[Planner, ...]] = {
    "aloha-transfer-cube": (transfer_cube,),
    "aloha-insertion": (
        insertion_grasp,
        _bring_together(ALIGN_GAP, move=45, steps=60),  # the peg's end level with the mouth
        _bring_together(PUSH_GAP, move=30, steps=60),
    ),
}


class ScriptedPolicy:
    """The task's script as a policy: reads no pixels; each answer runs to its phase's end."""

    cameras: tuple[str, ...] = ()

    def __init__(self, env: str, model: object) -> None:
        self.phases = SCRIPTS[env]
        self.solver = Solver(model)

    def reset(self, obs: Observation) -> None:
        self.held = {}
        for side in SIDES:
            point, rot = self.solver.pinch(side, obs.qpos[QPOS[side]])
            self.held[side] = Pose(point, rot, float(obs.qpos[GRIP[side]]))
        self.joints = {side: obs.qpos[QPOS[side]].copy() for side in SIDES}
        self.next_phase, self.start, self.plan = 0, 0, np.zeros((0, ACTION_DIM))

    def act(self, obs: Observation) -> np.ndarray:
        """(n, 14) joint targets from this step to the end of the current phase."""
        done = obs.step - self.start
        if done >= len(self.plan):
            if self.next_phase == len(self.phases):
                return self.plan[-1:]  # the script is over: hold the last targets
            self._plan_phase(obs)
            done = 0
        return self.plan[done:]

    def _plan_phase(self, obs: Observation) -> None:
        phase = self.phases[self.next_phase](obs, self.held)
        plan = np.zeros((phase.steps, ACTION_DIM))
        for side in SIDES:
            arm = track(self.solver, side, self.joints[side], phase.keys[side], phase.steps)
            plan[:, QPOS[side]], plan[:, GRIP[side]] = arm[:, :6], arm[:, 6]
            self.joints[side] = arm[-1, :6]
            self.held[side] = phase.keys[side][-1][1]
        self.next_phase, self.start, self.plan = self.next_phase + 1, obs.step, plan


class ZeroPolicy:
    """Every joint target 0 and both grippers closed: a policy that cannot succeed."""

    cameras: tuple[str, ...] = ()

    def reset(self, obs: Observation) -> None:
        pass

    def act(self, obs: Observation) -> np.ndarray:
        return np.zeros((1, ACTION_DIM))
