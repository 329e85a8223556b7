"""The RoboTwin 2.0 collector's layout: data/<episode>.hdf5 with observation/<camera>/rgb
JPEG rows and joint_action/vector, and instructions/<episode>.json beside data/."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from common.files import read_json
from pipeline.inputs.frames import FrameSource
from pipeline.inputs.hdf5_episode import H5Episode, strings
from pipeline.inputs.hdf5_layout import HDF5Layout
from pipeline.inputs.layout import EpisodeError

# Canonical camera name -> dataset path.
CAMERA_PATHS = {
    "head": "observation/head_camera/rgb",
    "low": "observation/front_camera/rgb",
    "left_wrist": "observation/left_camera/rgb",
    "right_wrist": "observation/right_camera/rgb",
}
ACTION_PATH = "joint_action/vector"


class RobotwinEpisode(H5Episode):
    """observation/<camera>/rgb JPEGs, instructions beside data/."""

    known = {path.split("/")[1]: camera for camera, path in CAMERA_PATHS.items()}

    def _camera_hint(self) -> str:
        return "observation/<camera>/rgb"

    def _own_cameras(self) -> dict[str, FrameSource]:
        obs = self.file.get("observation")
        groups = obs.items() if isinstance(obs, h5py.Group) else []
        # The collector encodes RGB arrays with cv2.imencode, which treats them as BGR;
        # decoding as BGR undoes that swap.
        return {
            own: FrameSource(self.known.get(own, own), g["rgb"], colorspace="BGR")
            for own, g in groups
            if isinstance(g, h5py.Group) and isinstance(g.get("rgb"), h5py.Dataset)
        }

    def _actions(self) -> np.ndarray:
        return self.matrix(ACTION_PATH, "action")

    def _instructions(self) -> tuple[list[str], list[str]]:
        # Pair by this file's own name (data/episode12.hdf5 -> instructions/episode12.json), never
        # by list position: RoboTwin's own preprocessing got this wrong after shuffling.
        data = next((p for p in self.path.parents if p.name == "data"), self.path.parent)
        relative = self.path.relative_to(data).with_suffix(".json")
        source = data.parent / "instructions" / relative
        if not source.is_file():
            return [], []
        content = read_json(source, EpisodeError, "instructions/ holds one JSON object per episode")
        if not isinstance(content, dict):
            raise EpisodeError(f"instructions file {relative} must hold a JSON object")
        return tuple(
            strings(content.get(key, []), f"'{key}' in instructions file {relative}")
            for key in ("seen", "unseen")
        )


class RobotwinLayout(HDF5Layout):
    name = "robotwin"
    known_cameras = RobotwinEpisode.known
    episode_class = RobotwinEpisode
    claim_rank = 1

    def claims(self, f: h5py.File) -> bool:
        obs = f.get("observation")
        return "joint_action" in f or (
            isinstance(obs, h5py.Group)
            and any(isinstance(g, h5py.Group) and "rgb" in g for g in obs.values())
        )

    def episode_dir(self, root: Path) -> Path:
        # Episodes sit in data/, next to the instructions/ they are paired with.
        return root / "data"

    def _where(self, root: Path, folder: Path) -> str:
        return f"{folder} (RoboTwin keeps episodes in data/)"

    def misplaced(self, root: Path) -> str:
        return (
            f"{root} holds RoboTwin episodes directly; pass the folder that holds "
            "data/ and instructions/ instead (usually its parent)."
        )
