"""What LIBERO and robomimic files share: many demos per HDF5 file under /data/demo_N, each one
episode, with `/data/demo_N/actions` (T, 7), `/data/demo_N/obs/<camera>` uint8 (T, H, W, 3)
and low-dimensional `obs/*` states. libero.py and robomimic.py say how the two differ.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import h5py
import numpy as np

from pipeline.inputs.frames import FrameSource
from pipeline.inputs.hdf5_episode import H5Episode
from pipeline.inputs.hdf5_layout import HDF5Layout
from pipeline.inputs.layout import EpisodeError, EpisodeRef, LayoutError, check_matrix

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


def is_demo_file(f: h5py.File) -> bool:
    """Whether an open file keeps its episodes as demo groups under /data."""
    data = f.get("data")
    return isinstance(data, h5py.Group) and any(name.startswith("demo_") for name in data)


def is_libero_file(f: h5py.File) -> bool:
    """Whether a demo file is LIBERO's: LIBERO's files carry the task in problem_info and
    name cameras *_rgb; robomimic's carry no language and name them *_image."""
    data = f["data"]
    demo = next(g for name, g in data.items() if name.startswith("demo_"))
    obs = demo.get("obs") if isinstance(demo, h5py.Group) else None
    libero_obs = isinstance(obs, h5py.Group) and any(k.endswith("_rgb") for k in obs)
    return "problem_info" in data.attrs or libero_obs


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


class DemoEpisode(H5Episode):
    """One demo of a demo file; subclasses say how frames are turned and where language is."""

    known = KNOWN_CAMERAS
    allow_encoded = False

    def __init__(
        self,
        ref: EpisodeRef,
        instruction: str | None = None,
        rename: Mapping[str, str] | None = None,
    ):
        self.demo = ref.item  # None: a file without demos, which info() then refuses
        super().__init__(ref, instruction, rename)

    def _upside_down(self) -> bool:
        """Whether the file's frames are stored upside down."""
        return False

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
        rotate = self._upside_down()
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
        """8 dims: end-effector position and axis-angle, then the two gripper fingers, from
        LIBERO's ee_states/gripper_states or else robomimic's robot0_eef_*."""
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


class DemoLayout(HDF5Layout):
    """A layout of demo files: every demo of every file is one episode, `file#demo_N`."""

    known_cameras = KNOWN_CAMERAS
    episode_class: type[DemoEpisode]

    def list_episodes(self, root: Path) -> list[EpisodeRef]:
        """Every demo, sorted by manifest path (`f.hdf5#demo_10` before `#demo_2`): the order
        `vla-data merge` rebuilds from manifests, so parts merge to the same set."""
        root = Path(root)
        refs = []
        for path in self.episode_files(root):
            relative = path.relative_to(root).as_posix()
            try:
                demos = list_demos(path)
            except OSError:
                demos = []
            if not demos:  # unreadable or demo-less: one entry, which probing then skips with why
                refs.append(EpisodeRef(path, relative))
            refs += [EpisodeRef(path, f"{relative}#{d}", d) for d in demos]
        if not refs:
            raise LayoutError(f"No demos found in the *.hdf5 files of {root}.")
        return sorted(refs, key=lambda r: r.relative)
