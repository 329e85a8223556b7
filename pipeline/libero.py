"""LIBERO and robomimic files: many demos per HDF5 file under /data/demo_N, each one episode.

Layout (LIBERO's scripts/create_dataset.py, robomimic's dataset code): `/data/demo_N/actions`
(T, 7), `/data/demo_N/obs/<camera>` uint8 (T, H, W, 3) and low-dimensional `obs/*` states.
LIBERO names cameras `agentview_rgb`/`eye_in_hand_rgb`, keeps `ee_states` (position and
axis-angle, 6) and `gripper_states` (2), puts the task in the JSON of `/data`'s
`problem_info` attribute and renders frames upside down (robosuite's OpenGL convention,
recorded in `macros_image_convention`). robomimic names cameras `agentview_image`/
`robot0_eye_in_hand_image`, keeps `robot0_eef_pos`, `robot0_eef_quat` (x, y, z, w) and
`robot0_gripper_qpos`, flips its frames upright when it records them, and has no language.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

import h5py
import numpy as np

from pipeline.frames import EpisodeError, FrameSource
from pipeline.reader import H5Episode, check_matrix, strings

_DEMO = re.compile(r"^demo_(\d+)$")
KNOWN_CAMERAS = {
    "agentview_rgb": "head",
    "eye_in_hand_rgb": "left_wrist",
    "agentview_image": "head",
    "robot0_eye_in_hand_image": "left_wrist",
}
_IMAGE_SUFFIXES = ("_rgb", "_image")


def list_demos(path: Path) -> list[str]:
    """The names of a file's demo groups (`demo_N` under /data); [] if none."""
    with h5py.File(path, "r") as f:
        data = f.get("data")
        return [n for n in data if _DEMO.match(n)] if isinstance(data, h5py.Group) else []


def quat_to_axis_angle(quat: np.ndarray) -> np.ndarray:
    """(T, 4) unit quaternions (x, y, z, w) -> (T, 3) axis-angle, robosuite's convention.

    LIBERO's ee_states hold exactly this of robosuite's eef quaternion, so robomimic files
    give the same 8-dim state as LIBERO's.
    """
    quat = quat.astype(np.float64)
    w = np.clip(quat[:, 3], -1.0, 1.0)
    den = np.sqrt(1.0 - w * w)
    angle = 2.0 * np.arccos(w)
    safe = den > 1e-8  # no rotation: the axis is arbitrary and the result zero
    out = np.zeros((len(quat), 3))
    out[safe] = quat[safe, :3] * (angle[safe] / den[safe])[:, None]
    return out


def task_from_file_name(path: Path) -> str:
    """LIBERO names files after their task: `KITCHEN_SCENE3_turn_on_the_stove_demo.hdf5` ->
    `turn on the stove` (scene prefix and `_demo` dropped)."""
    stem = path.stem.removesuffix("_demo")
    words = stem.split("_")
    # The scene prefix is upper-case words (and the scene number), the task lower-case.
    while words and not words[0].islower():
        words.pop(0)
    return " ".join(words or stem.split("_"))


class DemoEpisode(H5Episode):
    """One demo of a LIBERO (`layout="libero"`) or robomimic file."""

    known = KNOWN_CAMERAS
    allow_encoded = False

    def __init__(
        self,
        path: Path,
        demo: str | None,
        layout: str,
        instruction: str | None = None,
        rename: Mapping[str, str] | None = None,
    ):
        self.demo = demo
        self.layout = layout
        super().__init__(path, instruction, rename)

    def _group(self) -> h5py.Group:
        if self.demo is None:
            raise EpisodeError("holds no demos (/data/demo_N groups)")
        group = self.file.get(f"data/{self.demo}")
        if not isinstance(group, h5py.Group):
            raise EpisodeError(f"no demo group data/{self.demo}")
        return group

    def _camera_hint(self) -> str:
        return f"data/{self.demo}/obs/<camera>_rgb or _image"

    def _own_cameras(self) -> dict[str, FrameSource]:
        obs = self.file.get(f"data/{self.demo}/obs") if self.demo else None
        if not isinstance(obs, h5py.Group):
            return {}
        # LIBERO's frames are upside down unless the file says robosuite rendered them the
        # OpenCV way; robomimic turns its frames upright when recording.
        data_attrs = self.file["data"].attrs
        convention = data_attrs.get("macros_image_convention", "opengl")
        if isinstance(convention, bytes):
            convention = convention.decode()
        rotate = self.layout == "libero" and convention != "opencv"
        return {
            own: FrameSource(own, ds, rotate180=rotate)
            for own, ds in obs.items()
            if isinstance(ds, h5py.Dataset) and own.endswith(_IMAGE_SUFFIXES) and ds.ndim == 4
        }

    def _actions(self) -> np.ndarray:
        group = self._group()
        ds = group.get("actions")
        if not isinstance(ds, h5py.Dataset):
            raise EpisodeError(f"no action dataset 'data/{self.demo}/actions'")
        return check_matrix(ds[()], "action")

    def _obs(self, name: str) -> np.ndarray | None:
        ds = self._group().get(f"obs/{name}")
        return ds[()] if isinstance(ds, h5py.Dataset) else None

    def _proprio(self) -> np.ndarray | None:
        """8 dims: end-effector position and axis-angle, then the two gripper fingers."""
        ee, gripper = self._obs("ee_states"), self._obs("gripper_states")
        if ee is None:
            pos, quat = self._obs("robot0_eef_pos"), self._obs("robot0_eef_quat")
            gripper = self._obs("robot0_gripper_qpos")
            if pos is None or quat is None:
                return None
            if quat.ndim != 2 or quat.shape[1] != 4:
                raise EpisodeError(f"robot0_eef_quat has shape {quat.shape}, expected (T, 4)")
            ee = np.concatenate([pos, quat_to_axis_angle(quat)], axis=1)
        if gripper is None:
            return None
        if ee.ndim != 2 or gripper.ndim != 2 or len(ee) != len(gripper):
            raise EpisodeError(
                f"end-effector states {ee.shape} and gripper states {gripper.shape} do not align"
            )
        return check_matrix(np.concatenate([ee, gripper], axis=1), "proprio")

    def _instructions(self) -> tuple[list[str], list[str]]:
        if self.layout == "libero":
            text = self.file["data"].attrs.get("problem_info")
            if text is not None:
                try:
                    info = json.loads(text)
                except (TypeError, ValueError) as e:
                    raise EpisodeError(f"problem_info of /data is not JSON ({e})") from e
                found = info.get("language_instruction") if isinstance(info, dict) else None
                if found:
                    return strings(found, "language_instruction in problem_info"), []
        if self.instruction:
            return [self.instruction], []
        if self.layout == "libero":
            return [task_from_file_name(self.path)], []
        return [], []
