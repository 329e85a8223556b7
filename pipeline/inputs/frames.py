"""Camera frames in HDF5 datasets, raw or one JPEG per row, read upright and in true colour."""

from __future__ import annotations

from dataclasses import dataclass

import h5py
import numpy as np
import simplejpeg

from pipeline.inputs.layout import EpisodeError


def is_encoded(ds: h5py.Dataset) -> bool:
    """One encoded image per row: fixed/vlen bytes or vlen uint8 (1-D), padded uint8 (2-D)."""
    dt = ds.dtype
    if ds.ndim == 1:
        return dt.kind == "S" or h5py.check_vlen_dtype(dt) in (bytes, np.uint8)
    # Real ALOHA recordings store each JPEG zero-padded into a fixed-width uint8 row.
    return ds.ndim == 2 and dt == np.uint8


def _as_bytes(row: object) -> bytes:
    # A JPEG ends with its EOI marker (FF D9), so stripping zeros removes exactly the padding
    # ALOHA's recorder adds (numpy already strips it from fixed-length `S` strings).
    return row.tobytes().rstrip(b"\0") if isinstance(row, np.ndarray) else bytes(row)


def rotate180(frames: np.ndarray) -> np.ndarray:
    """(N, H, W, C) uint8 frames turned 180 degrees, as a contiguous copy.

    Each pixel is moved as one C-byte item: twice as fast as reversing bytes, which matters
    beside the resize every frame gets.
    """
    n, h, w, c = frames.shape
    pixels = np.ascontiguousarray(frames).view(np.dtype((np.void, c))).reshape(n, h, w)
    return np.ascontiguousarray(pixels[:, ::-1, ::-1]).view(np.uint8).reshape(n, h, w, c)


@dataclass(frozen=True)
class FrameSource:
    """One camera's dataset and how its pixels were stored."""

    camera: str  # the set's name for it, for messages
    ds: h5py.Dataset
    colorspace: str = "RGB"  # "BGR" when OpenCV encoded RGB arrays (its decoder undoes that)
    rotate180: bool = False  # stored upside down (MuJoCo's OpenGL image origin)

    def check(self, steps: int, allow_encoded: bool = True) -> None:
        ds = self.ds
        if is_encoded(ds):
            if not allow_encoded:
                raise EpisodeError(f"{self.camera} frames must be raw uint8 (T, H, W, 3) arrays")
        elif ds.dtype != np.uint8:
            raise EpisodeError(f"{self.camera} frames are {ds.dtype} but must be uint8")
        elif ds.ndim != 4 or ds.shape[-1] != 3 or 0 in ds.shape[1:]:
            raise EpisodeError(f"{self.camera} frames have shape {ds.shape}, expected (T, H, W, 3)")
        if ds.shape[0] != steps:
            raise EpisodeError(
                f"action has {steps} rows but {self.camera} has {ds.shape[0]} frames"
            )

    def check_decodes(self) -> None:
        """The first and last frame decode (raw frames need no check)."""
        if is_encoded(self.ds) and len(self.ds) > 0:
            self.read(0, 1)
            self.read(len(self.ds) - 1, len(self.ds))

    def read(self, start: int, stop: int) -> np.ndarray:
        """Frames [start, stop) as uint8 (stop - start, H, W, 3), upright, in true RGB."""
        ds = self.ds
        if not 0 <= start < stop <= len(ds):
            raise ValueError(
                f"frame range [{start}, {stop}) outside 0..{len(ds)} for {self.camera}"
            )
        try:
            rows = ds[start:stop]  # by slice: episodes run to gigabytes
        except OSError as e:
            raise EpisodeError(
                f"camera '{self.camera}' frames {start}..{stop - 1} unreadable ({e})"
            ) from e
        if is_encoded(ds):
            images = [self._decode(start + i, row) for i, row in enumerate(rows)]
            if len({im.shape for im in images}) > 1:
                raise EpisodeError(
                    f"camera '{self.camera}' frames {start}..{stop - 1} differ in size"
                )
            frames = np.stack(images)
        else:
            frames = np.asarray(rows, dtype=np.uint8)
        return rotate180(frames) if self.rotate180 else frames

    def _decode(self, index: int, row: object) -> np.ndarray:
        where = f"camera '{self.camera}' frame {index}"
        try:
            image = simplejpeg.decode_jpeg(_as_bytes(row), colorspace=self.colorspace)
        except ValueError as e:
            raise EpisodeError(f"{where} is not a valid JPEG ({e})") from e
        if image.ndim != 3 or image.shape[2] != 3:
            raise EpisodeError(f"{where} decodes to shape {image.shape}")
        return image
