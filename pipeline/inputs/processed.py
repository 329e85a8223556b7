"""The "processed" layout: RoboTwin's OpenVLA-OFT preprocessing output, one HDF5 file per
episode with raw frames, `action` and the seen/unseen instructions at the file's root."""

from __future__ import annotations

import h5py
import numpy as np

from pipeline.inputs.frames import FrameSource
from pipeline.inputs.hdf5_episode import H5Episode, strings
from pipeline.inputs.hdf5_layout import HDF5Layout

# Canonical camera name -> dataset path.
CAMERA_PATHS = {
    "head": "head_camera_image",
    "low": "low_cam_image",
    "left_wrist": "left_wrist_image",
    "right_wrist": "right_wrist_image",
}
ACTION_PATH = "action"


class ProcessedEpisode(H5Episode):
    """Raw frames and seen/unseen at the root."""

    known = {path: camera for camera, path in CAMERA_PATHS.items()}
    allow_encoded = False

    def _own_cameras(self) -> dict[str, FrameSource]:
        found = {own: self.dataset(own) for own in self.known}
        return {own: FrameSource(self.known[own], ds) for own, ds in found.items() if ds}

    def _actions(self) -> np.ndarray:
        return self.matrix(ACTION_PATH, "action")

    def _instructions(self) -> tuple[list[str], list[str]]:
        lists = []
        for key in ("seen", "unseen"):
            ds = self.dataset(key)
            lists.append(strings(ds[()], f"'{key}'") if ds is not None else [])
        return lists[0], lists[1]


class ProcessedLayout(HDF5Layout):
    name = "processed"
    known_cameras = ProcessedEpisode.known
    episode_class = ProcessedEpisode
    claim_rank = 3  # any file with an `action` dataset: asked after every other layout

    def claims(self, f: h5py.File) -> bool:
        return ACTION_PATH in f or any(name in f for name in CAMERA_PATHS.values())
