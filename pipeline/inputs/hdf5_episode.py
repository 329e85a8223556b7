"""The episode reader all HDF5 layouts share: actions, proprio, instructions, cameras, checked."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np

from pipeline.inputs.cameras import canonical_order, set_names
from pipeline.inputs.frames import FrameSource
from pipeline.inputs.layout import (
    MAX_INSTRUCTION_CHARS,
    EpisodeError,
    EpisodeInfo,
    EpisodeRef,
    check_matrix,
)


def strings(value: object, what: str) -> list[str]:
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


class H5Episode:
    """An episode inside an HDF5 file, opened read-only; use as a context manager.

    Subclasses say where the actions, proprio, instructions and cameras are; cameras are
    known here by their set names (see cameras.py).
    """

    known: dict[str, str] = {}  # the layout's own camera names -> canonical names
    allow_encoded = True  # whether frames may be stored as one JPEG per row

    def __init__(
        self,
        ref: EpisodeRef,
        instruction: str | None = None,
        rename: Mapping[str, str] | None = None,
    ):
        self.path = Path(ref.path)
        self.instruction = instruction
        if not self.path.is_file():
            raise EpisodeError("file not found")
        try:
            self.file = h5py.File(self.path, "r")
        except OSError as e:
            raise EpisodeError(f"not a readable HDF5 file ({e})") from e
        try:
            own = self._own_cameras()
        except OSError as e:
            self.close()
            raise EpisodeError(f"unreadable data ({e})") from e
        by_set = set_names(own, self.known, rename or {})
        self._sources = {
            name: replace(own[by_set[name]], camera=name) for name in canonical_order(by_set)
        }

    def __enter__(self) -> H5Episode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.file.close()

    # What a layout provides.
    def _own_cameras(self) -> dict[str, FrameSource]:
        raise NotImplementedError

    def _actions(self) -> np.ndarray:
        raise NotImplementedError

    def _proprio(self) -> np.ndarray | None:
        return None

    def _instructions(self) -> tuple[list[str], list[str]]:
        return ([self.instruction] if self.instruction else []), []

    def _camera_hint(self) -> str:
        return ", ".join(self.known)

    # Shared reading and checking.
    def dataset(self, name: str) -> h5py.Dataset | None:
        obj = self.file.get(name)
        return obj if isinstance(obj, h5py.Dataset) else None

    def matrix(self, name: str, what: str) -> np.ndarray:
        ds = self.dataset(name)
        if ds is None:
            raise EpisodeError(f"no {what} dataset '{name}'")
        return check_matrix(ds[()], what)

    def present_cameras(self) -> tuple[str, ...]:
        """Set names of the cameras stored in this episode, canonical ones first."""
        return tuple(self._sources)

    def info(self) -> EpisodeInfo:
        """Read actions, proprio and instructions and check every array's shape against them."""
        try:
            actions = self._actions()
            steps = actions.shape[0]
            if steps == 0:
                raise EpisodeError("action has no rows (empty episode)")
            proprio = self._proprio()
            if proprio is not None and proprio.shape[0] != steps:
                raise EpisodeError(
                    f"action has {steps} rows but proprio has {proprio.shape[0]} rows"
                )
            cameras = self.present_cameras()
            if not cameras:
                raise EpisodeError(f"no camera images (expected any of {self._camera_hint()})")
            for camera in cameras:
                self._sources[camera].check(steps, self.allow_encoded)
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

    def check_cameras(self, cameras: Sequence[str]) -> None:
        """Fail unless every chosen camera exists and its first and last frame decode."""
        present = self.present_cameras()
        for camera in cameras:
            if camera not in present:
                raise EpisodeError(f"no camera '{camera}' (has {', '.join(present) or 'none'})")
            self._sources[camera].check_decodes()

    def frames(self, camera: str, start: int, stop: int) -> np.ndarray:
        """Frames [start, stop) of one camera as uint8 (stop - start, H, W, 3) in true RGB."""
        source = self._sources.get(camera)
        if source is None:
            raise EpisodeError(f"no camera '{camera}'")
        return source.read(start, stop)
