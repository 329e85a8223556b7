"""LIBERO as OpenVLA-OFT trains on it: no-op steps dropped, the gripper clipped and inverted.

OFT's LIBERO sets (`*_no_noops`) come from its regenerate_libero_dataset.py, which skips every
step whose action is a no-op: translation and rotation (all but the last dimension) of norm
below 1e-4 and, after the first kept step, the same gripper command as the last kept action
(so a robot standing still while it opens or closes its gripper is kept). Its RLDS reader
then clips LIBERO's gripper command (-1 open .. +1 close) to [0, 1] and inverts it (1 - g),
so 1 means open and 0 closed; its LIBERO evaluation maps the prediction back.

`--robot libero` applies both to any input (LIBERO's HDF5 demos, an RLDS set, ...) through
one reader wrapper. OFT re-rendered the kept steps in simulation; a converter cannot, so the
dropped steps' frames and states go with them (the robot stood still through them).
"""

from __future__ import annotations

from dataclasses import replace
from types import TracebackType

import numpy as np

from pipeline.inputs.layout import EpisodeError, EpisodeInfo, EpisodeReader, EpisodeRef
from pipeline.inputs.registry import input_layout

NOOP_THRESHOLD = 1e-4  # OFT's is_noop threshold on the norm of the first six dimensions
GRIPPER = -1  # the gripper command is LIBERO's last action dimension


def noop_steps(actions: np.ndarray, threshold: float = NOOP_THRESHOLD) -> np.ndarray:
    """(T, D) raw LIBERO actions -> (T,) bool, True for the steps OFT drops.

    Each step is compared with the last step kept, not the previous row: a run of no-ops
    after a gripper change is measured against the change.
    """
    actions = np.asarray(actions)
    if actions.ndim != 2 or actions.shape[1] < 2:
        raise ValueError(f"actions must be (T, D) with D >= 2, got {actions.shape}")
    still = np.linalg.norm(actions[:, :GRIPPER].astype(np.float64), axis=1) < threshold
    dropped = np.zeros(len(actions), dtype=bool)
    last_kept = None
    for t in range(len(actions)):
        same_gripper = last_kept is None or actions[t, GRIPPER] == actions[last_kept, GRIPPER]
        if still[t] and same_gripper:
            dropped[t] = True
        else:
            last_kept = t
    return dropped


def oft_gripper(actions: np.ndarray) -> np.ndarray:
    """(T, D) actions with LIBERO's gripper (-1 open, +1 close) -> the same with OFT's
    (clip to [0, 1], then 1 - g: 1 open, 0 closed); the other dimensions unchanged."""
    out = np.array(actions, dtype=np.float32, copy=True)
    out[:, GRIPPER] = 1.0 - np.clip(out[:, GRIPPER], 0.0, 1.0)
    return out


class OftLiberoEpisode:
    """An episode as OFT's LIBERO sets hold it: its no-op steps left out, its gripper OFT's."""

    def __init__(self, inner: EpisodeReader) -> None:
        self.inner = inner
        self._kept: np.ndarray | None = None

    def __enter__(self) -> OftLiberoEpisode:
        self.inner.__enter__()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.inner.__exit__(*exc)

    def present_cameras(self) -> tuple[str, ...]:
        return self.inner.present_cameras()

    def check_cameras(self, cameras) -> None:
        self.inner.check_cameras(cameras)

    def info(self) -> EpisodeInfo:
        info = self.inner.info()
        if info.actions.shape[1] != 7:
            raise EpisodeError(f"has {info.actions.shape[1]}-dim actions; --robot libero takes 7")
        self._kept = np.flatnonzero(~noop_steps(info.actions))
        if not len(self._kept):
            raise EpisodeError("every step is a no-op (OpenVLA-OFT's LIBERO rule)")
        kept = self._kept
        return replace(
            info,
            steps=len(kept),
            actions=oft_gripper(info.actions[kept]),
            proprio=None if info.proprio is None else info.proprio[kept],
            dropped_steps=info.steps - len(kept),
        )

    def frames(self, camera: str, start: int, stop: int) -> np.ndarray:
        """Frames of kept steps [start, stop): one read of the span they cover."""
        if self._kept is None:
            self.info()
        rows = self._kept[start:stop]
        block = self.inner.frames(camera, int(rows[0]), int(rows[-1]) + 1)
        return block[rows - rows[0]]


def open_episode(
    layout: str, ref: EpisodeRef, instruction: str | None, rename: dict[str, str], robot: str | None
) -> EpisodeReader:
    """An episode of `layout`, read with the conventions `--robot` asks for (LIBERO's only
    change the data; the other platforms set chunk, masks and normalization alone)."""
    episode = input_layout(layout).open_episode(ref, instruction, rename)
    return OftLiberoEpisode(episode) if robot == "libero" else episode
