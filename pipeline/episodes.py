"""Find, read and validate robot HDF5 episodes in the processed, RoboTwin 2.0 and ALOHA layouts."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import simplejpeg

from shards.errors import UserError
from shards.format import CAMERAS

LAYOUTS = ("processed", "robotwin", "aloha")
# Longest instruction accepted, in characters: real task instructions are one or two
# sentences, and every sample carries all of its episode's instructions in meta.json.
MAX_INSTRUCTION_CHARS = 2000

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

# RoboTwin's collector encodes RGB arrays with cv2.imencode, which treats them as BGR; decoding
# as BGR undoes that swap. ALOHA and anything else holds ordinary RGB JPEGs.
_JPEG_COLORSPACE = {"processed": "RGB", "robotwin": "BGR", "aloha": "RGB"}


class EpisodeError(Exception):
    """One-line, user-facing reason an episode can't be used (the caller prefixes the file name)."""


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
    if layout not in LAYOUTS:
        raise LayoutError(f"Unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}.")


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


@dataclass
class EpisodeInfo:
    """The cheap facts about an episode, read without decoding its frames."""

    steps: int
    actions: np.ndarray
    proprio: np.ndarray | None
    cameras: tuple[str, ...]
    instructions: list[str]
    unseen: list[str]


def _is_encoded(ds: h5py.Dataset) -> bool:
    """One encoded image per row: fixed/vlen bytes or vlen uint8 (1-D), padded uint8 (2-D)."""
    dt = ds.dtype
    if ds.ndim == 1:
        return dt.kind == "S" or h5py.check_vlen_dtype(dt) in (bytes, np.uint8)
    # Real ALOHA recordings store each JPEG zero-padded into a fixed-width uint8 row.
    return ds.ndim == 2 and dt == np.uint8


def _as_bytes(row: object) -> bytes:
    return row.tobytes() if isinstance(row, np.ndarray) else bytes(row)


def _strings(value: object, what: str) -> list[str]:
    """Instruction strings from an HDF5 value or parsed JSON: one string or a list of them."""
    items = value.tolist() if isinstance(value, np.ndarray) else value
    if isinstance(items, (str, bytes)):
        items = [items]
    if not isinstance(items, list) or not all(isinstance(s, (str, bytes)) for s in items):
        raise EpisodeError(f"{what} must be a string or a list of strings")
    try:
        texts = [s.decode("utf-8") if isinstance(s, bytes) else s for s in items]
    except UnicodeDecodeError as e:
        raise EpisodeError(f"{what} is not valid UTF-8 ({e})") from e
    return [t for t in texts if t.strip()]


class Episode:
    """One episode file opened read-only; use as a context manager so the file is closed."""

    def __init__(self, path: Path, layout: str, instruction: str | None = None):
        _check_layout(layout)
        self.path = Path(path)
        self.layout = layout
        self.instruction = instruction
        if not self.path.is_file():
            raise EpisodeError("file not found")
        try:
            self.file = h5py.File(self.path, "r")
        except OSError as e:
            raise EpisodeError(f"not a readable HDF5 file ({e})") from e

    def __enter__(self) -> Episode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.file.close()

    def _dataset(self, name: str) -> h5py.Dataset | None:
        obj = self.file.get(name)
        return obj if isinstance(obj, h5py.Dataset) else None

    def _camera(self, camera: str) -> h5py.Dataset | None:
        name = CAMERA_PATHS[self.layout].get(camera)
        return self._dataset(name) if name else None

    def present_cameras(self) -> tuple[str, ...]:
        """Canonical names of the cameras stored in this file, in canonical order."""
        return tuple(c for c in CAMERAS if self._camera(c) is not None)

    def info(self) -> EpisodeInfo:
        """Read actions, proprio and instructions and check every array's shape against them."""
        try:
            actions = self._matrix(ACTION_PATHS[self.layout], "action")
            steps = actions.shape[0]
            if steps == 0:
                raise EpisodeError("action has no rows (empty episode)")
            proprio = None
            if self.layout in PROPRIO_PATHS:
                proprio = self._matrix(PROPRIO_PATHS[self.layout], "proprio")
                if proprio.shape[0] != steps:
                    raise EpisodeError(
                        f"action has {steps} rows but proprio has {proprio.shape[0]} rows"
                    )
            cameras = self.present_cameras()
            if not cameras:
                expected = ", ".join(CAMERA_PATHS[self.layout].values())
                raise EpisodeError(f"no camera images (expected any of {expected})")
            for camera in cameras:
                self._check_frames(camera, steps)
            seen, unseen = self._instructions()
            longest = max(map(len, seen + unseen), default=0)
            if longest > MAX_INSTRUCTION_CHARS:
                raise EpisodeError(
                    f"an instruction has {longest} characters, "
                    f"over the limit of {MAX_INSTRUCTION_CHARS}"
                )
        except OSError as e:
            raise EpisodeError(f"unreadable data ({e})") from e
        return EpisodeInfo(steps, actions, proprio, cameras, seen, unseen)

    def _matrix(self, name: str, what: str) -> np.ndarray:
        ds = self._dataset(name)
        if ds is None:
            raise EpisodeError(f"no {what} dataset '{name}'")
        if ds.ndim != 2 or ds.dtype.kind not in "fiu":
            raise EpisodeError(f"{what} must be a 2-D numeric array, got {ds.dtype} {ds.shape}")
        values = ds[()].astype(np.float32)
        bad = ~np.isfinite(values)
        if bad.any():
            row = int(np.argwhere(bad)[0, 0])
            raise EpisodeError(f"{what} has non-finite values (NaN or inf), first at row {row}")
        return values

    def _check_frames(self, camera: str, steps: int) -> None:
        ds = self._camera(camera)
        if _is_encoded(ds):
            if self.layout == "processed":
                raise EpisodeError(f"{camera} frames must be raw uint8 (T, H, W, 3) arrays")
        elif ds.dtype != np.uint8:
            raise EpisodeError(f"{camera} frames are {ds.dtype} but must be uint8")
        elif ds.ndim != 4 or ds.shape[-1] != 3 or 0 in ds.shape[1:]:
            raise EpisodeError(f"{camera} frames have shape {ds.shape}, expected (T, H, W, 3)")
        if ds.shape[0] != steps:
            raise EpisodeError(f"action has {steps} rows but {camera} has {ds.shape[0]} frames")

    def _instructions(self) -> tuple[list[str], list[str]]:
        if self.layout == "aloha":
            return ([self.instruction] if self.instruction else []), []
        if self.layout == "processed":
            lists = []
            for key in ("seen", "unseen"):
                ds = self._dataset(key)
                lists.append(_strings(ds[()], f"'{key}'") if ds is not None else [])
            return lists[0], lists[1]
        return self._robotwin_instructions()

    def _robotwin_instructions(self) -> tuple[list[str], list[str]]:
        # Pair by this file's own name (data/episode12.hdf5 -> instructions/episode12.json), never
        # by list position: RoboTwin's own preprocessing got this wrong after shuffling.
        data = next((p for p in self.path.parents if p.name == "data"), self.path.parent)
        relative = self.path.relative_to(data).with_suffix(".json")
        source = data.parent / "instructions" / relative
        if not source.is_file():
            return [], []
        try:
            content = json.loads(source.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise EpisodeError(f"instructions file {relative} is not readable JSON ({e})") from e
        if not isinstance(content, dict):
            raise EpisodeError(f"instructions file {relative} must hold a JSON object")
        return tuple(
            _strings(content.get(key, []), f"'{key}' in instructions file {relative}")
            for key in ("seen", "unseen")
        )

    def check_cameras(self, cameras: Sequence[str]) -> None:
        """Fail unless every chosen camera exists and its first and last frame decode."""
        present = self.present_cameras()
        for camera in cameras:
            if camera not in present:
                raise EpisodeError(f"no camera '{camera}' (has {', '.join(present) or 'none'})")
            ds = self._camera(camera)
            if _is_encoded(ds) and len(ds) > 0:
                self.frames(camera, 0, 1)
                self.frames(camera, len(ds) - 1, len(ds))

    def frames(self, camera: str, start: int, stop: int) -> np.ndarray:
        """Frames [start, stop) of one camera as uint8 (stop - start, H, W, 3) in true RGB."""
        ds = self._camera(camera)
        if ds is None:
            raise EpisodeError(f"no camera '{camera}'")
        if not 0 <= start < stop <= len(ds):
            raise ValueError(f"frame range [{start}, {stop}) outside 0..{len(ds)} for {camera}")
        try:
            rows = ds[start:stop]  # by slice: ALOHA episodes run to gigabytes
        except OSError as e:
            raise EpisodeError(
                f"camera '{camera}' frames {start}..{stop - 1} unreadable ({e})"
            ) from e
        if not _is_encoded(ds):
            return np.asarray(rows, dtype=np.uint8)
        images = [self._decode(camera, start + i, row) for i, row in enumerate(rows)]
        if len({im.shape for im in images}) > 1:
            raise EpisodeError(f"camera '{camera}' frames {start}..{stop - 1} differ in size")
        return np.stack(images)

    def _decode(self, camera: str, index: int, row: object) -> np.ndarray:
        try:
            image = simplejpeg.decode_jpeg(_as_bytes(row), colorspace=_JPEG_COLORSPACE[self.layout])
        except ValueError as e:
            raise EpisodeError(f"camera '{camera}' frame {index} is not a valid JPEG ({e})") from e
        if image.ndim != 3 or image.shape[2] != 3:
            raise EpisodeError(f"camera '{camera}' frame {index} decodes to shape {image.shape}")
        return image
