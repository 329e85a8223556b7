"""Find, detect and read HDF5 episodes: processed, RoboTwin 2.0 and ALOHA (one file per episode)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import h5py
import numpy as np

from common.errors import UserError
from common.files import read_json
from pipeline.frames import EpisodeError, FrameSource
from pipeline.reader import (  # noqa: F401 - the episode API, importable from here
    MAX_INSTRUCTION_CHARS,
    EpisodeInfo,
    H5Episode,
    check_matrix,
    strings,
)

# Every layout `vla-data convert` reads; the first three keep one episode per HDF5 file,
# LIBERO and robomimic many demos per file, LeRobot a folder of parquet and video files.
LAYOUTS = ("processed", "robotwin", "aloha", "libero", "robomimic", "lerobot")
FILE_LAYOUTS = LAYOUTS[:3]

# Canonical camera name -> dataset path, per layout.
CAMERA_PATHS: dict[str, dict[str, str]] = {
    "processed": {
        "head": "head_camera_image",
        "low": "low_cam_image",
        "left_wrist": "left_wrist_image",
        "right_wrist": "right_wrist_image",
    },
    "robotwin": {
        "head": "observation/head_camera/rgb",
        "low": "observation/front_camera/rgb",
        "left_wrist": "observation/left_camera/rgb",
        "right_wrist": "observation/right_camera/rgb",
    },
    "aloha": {
        "head": "observations/images/cam_high",
        "low": "observations/images/cam_low",
        "left_wrist": "observations/images/cam_left_wrist",
        "right_wrist": "observations/images/cam_right_wrist",
    },
}
ACTION_PATHS = {"processed": "action", "robotwin": "joint_action/vector", "aloha": "action"}
PROPRIO_PATHS = {"aloha": "observations/qpos"}

__all__ = ["EpisodeError"]  # raised by every layout's reader; defined beside the frame reader


def skip_reason(exc: Exception, stage: str) -> str:
    """One line saying why an episode is skipped, for an EpisodeError or any other failure.

    Anything an episode file can trigger (a decoder's odd exception, running out of memory on
    a huge dataset) costs that episode only: one file must never end a long conversion.
    """
    if isinstance(exc, EpisodeError):
        text = str(exc)
    elif isinstance(exc, OSError):
        text = f"unreadable ({exc})"
    else:
        text = f"failed while {stage}: {type(exc).__name__}: {exc}"
    return " ".join(text.split())


class LayoutError(UserError):
    """Folder-level problem (missing, empty, unrecognised); the message names the folder."""


def _check_layout(layout: str) -> None:
    if layout not in LAYOUTS or layout == "lerobot":
        raise LayoutError(f"Unknown layout {layout!r}; use one of {', '.join(LAYOUTS[:-1])}.")


def _episode_dir(root: Path, layout: str) -> Path:
    # RoboTwin keeps episodes in data/ next to instructions/; other layouts use the whole folder.
    return root / "data" if layout == "robotwin" else root


def _find_hdf5(folder: Path) -> list[Path]:
    """Every *.hdf5 file under folder, following symlinked folders (rglob does not).

    Each real folder is read once, under its first path in sorted order: a link back up
    the tree ends there instead of looping, and two links to one folder give no duplicates.
    """
    seen: set[tuple[int, int]] = set()
    found = []
    for top, dirs, files in os.walk(folder, followlinks=True):
        info = os.stat(top)
        if (info.st_dev, info.st_ino) in seen:
            dirs.clear()
            continue
        seen.add((info.st_dev, info.st_ino))
        dirs.sort()
        found += [Path(top, f) for f in files if f.endswith(".hdf5")]
    return [p for p in found if p.is_file()]


def list_episodes(root: Path, layout: str) -> list[Path]:
    """Every *.hdf5 episode under root (robotwin: under root/data), sorted by relative path.

    Raises LayoutError when the layout is unknown, the folder is missing or holds no episodes.
    """
    _check_layout(layout)
    root = Path(root)
    if not root.is_dir():
        raise LayoutError(f"Episode folder {root} does not exist.")
    folder = _episode_dir(root, layout)
    paths = _find_hdf5(folder) if folder.is_dir() else []
    if not paths:
        where = f"{folder} (RoboTwin keeps episodes in data/)" if layout == "robotwin" else root
        raise LayoutError(f"No *.hdf5 episodes found in {where}.")
    return sorted(paths, key=lambda p: p.relative_to(root).as_posix())


def _classify(f: h5py.File) -> str | None:
    data = f.get("data")
    if isinstance(data, h5py.Group) and any(name.startswith("demo_") for name in data):
        # LIBERO's files carry the task in problem_info and name cameras *_rgb; robomimic's
        # carry no language and name them *_image.
        demo = next(g for name, g in data.items() if name.startswith("demo_"))
        obs = demo.get("obs") if isinstance(demo, h5py.Group) else None
        libero_obs = isinstance(obs, h5py.Group) and any(k.endswith("_rgb") for k in obs)
        return "libero" if "problem_info" in data.attrs or libero_obs else "robomimic"
    obs = f.get("observation")
    if "joint_action" in f or (
        isinstance(obs, h5py.Group)
        and any(isinstance(g, h5py.Group) and "rgb" in g for g in obs.values())
    ):
        return "robotwin"
    if "observations" in f:
        return "aloha"
    if "action" in f or any(name in f for name in CAMERA_PATHS["processed"].values()):
        return "processed"
    return None


def detect_layout(root: Path) -> str:
    """Guess the layout of a folder from the datasets inside its episode files."""
    root = Path(root)
    if not root.is_dir():
        raise LayoutError(f"Episode folder {root} does not exist.")
    if (root / "meta" / "info.json").is_file():
        return "lerobot"
    data = root / "data"
    candidates = _find_hdf5(data) if data.is_dir() else []
    in_data = bool(candidates)
    if not in_data:
        candidates = _find_hdf5(root)
    if not candidates:
        raise LayoutError(f"No *.hdf5 episodes found in {root}.")
    for path in sorted(candidates):
        try:
            with h5py.File(path, "r") as f:
                layout = _classify(f)
        except OSError:
            continue  # one broken file should not hide the layout of the rest
        if layout is None:
            continue
        if layout == "robotwin" and not in_data:
            raise LayoutError(
                f"{root} holds RoboTwin episodes directly; pass the folder that holds "
                "data/ and instructions/ instead (usually its parent)."
            )
        return layout
    raise LayoutError(
        f"Could not recognise the episodes in {root} as any of {', '.join(LAYOUTS)}; "
        "pass --layout or check the files are readable HDF5 episodes."
    )


def _datasets_in(group: object) -> dict[str, h5py.Dataset]:
    if not isinstance(group, h5py.Group):
        return {}
    return {name: ds for name, ds in group.items() if isinstance(ds, h5py.Dataset)}


class ProcessedEpisode(H5Episode):
    """RoboTwin's OpenVLA-OFT preprocessing output: raw frames and seen/unseen at the root."""

    known = {path: camera for camera, path in CAMERA_PATHS["processed"].items()}
    allow_encoded = False

    def _own_cameras(self) -> dict[str, FrameSource]:
        found = {own: self.dataset(own) for own in self.known}
        return {own: FrameSource(self.known[own], ds) for own, ds in found.items() if ds}

    def _actions(self) -> np.ndarray:
        return self.matrix(ACTION_PATHS["processed"], "action")

    def _instructions(self) -> tuple[list[str], list[str]]:
        lists = []
        for key in ("seen", "unseen"):
            ds = self.dataset(key)
            lists.append(strings(ds[()], f"'{key}'") if ds is not None else [])
        return lists[0], lists[1]


class RobotwinEpisode(H5Episode):
    """RoboTwin 2.0 collector output: observation/<camera>/rgb JPEGs, instructions beside data/."""

    known = {path.split("/")[1]: camera for camera, path in CAMERA_PATHS["robotwin"].items()}

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
        return self.matrix(ACTION_PATHS["robotwin"], "action")

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


class AlohaEpisode(H5Episode):
    """ALOHA/ACT recordings: observations/images/<camera> raw or JPEG rows, qpos, action."""

    known = {path.split("/")[-1]: camera for camera, path in CAMERA_PATHS["aloha"].items()}

    def _camera_hint(self) -> str:
        return "observations/images/<camera>"

    def _own_cameras(self) -> dict[str, FrameSource]:
        # ALOHA's recorder with compress=True JPEG-encodes the camera arrays (RGB from the
        # cameras) with cv2.imencode, which reads them as BGR, and marks the file `compress`.
        colorspace = "BGR" if bool(self.file.attrs.get("compress", False)) else "RGB"
        images = _datasets_in(self.file.get("observations/images"))
        return {
            own: FrameSource(self.known.get(own, own), ds, colorspace=colorspace)
            for own, ds in images.items()
        }

    def _actions(self) -> np.ndarray:
        return self.matrix(ACTION_PATHS["aloha"], "action")

    def _proprio(self) -> np.ndarray | None:
        return self.matrix(PROPRIO_PATHS["aloha"], "proprio")


_FILE_EPISODES = {
    "processed": ProcessedEpisode,
    "robotwin": RobotwinEpisode,
    "aloha": AlohaEpisode,
}


def Episode(  # noqa: N802 - reads as the class it returns
    path: Path,
    layout: str,
    instruction: str | None = None,
    rename: Mapping[str, str] | None = None,
) -> H5Episode:
    """One episode file of a one-file-per-episode layout (processed, robotwin, aloha)."""
    if layout not in _FILE_EPISODES:
        raise LayoutError(f"Unknown layout {layout!r}; use one of {', '.join(_FILE_EPISODES)}.")
    return _FILE_EPISODES[layout](path, instruction, rename)
