"""One camera's frames of one LeRobot episode, decoded from the mp4 file it shares with others."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.inputs.layout import EpisodeError


class EpisodeVideo:
    """One camera's frames of one episode, decoded from its shared mp4 at the frame times."""

    def __init__(self, path: Path, start_s: float, fps: float):
        import av

        self.path, self.start_s, self.period = path, start_s, 1.0 / fps
        try:
            self.container = av.open(str(path))
        except (OSError, av.FFmpegError) as e:
            raise EpisodeError(f"video {path.name} unreadable ({e})") from e
        self.stream = self.container.streams.video[0]
        # Conversion runs one process per core: one decoding thread each, or they contend.
        self.stream.thread_count = 1
        self._frames = None  # decoding iterator, continued while reads go forward
        self._current: tuple[float, object] | None = None

    def close(self) -> None:
        self.container.close()

    def _seek(self, t: float) -> None:
        # Seek to the key frame at or before t, then decode forward from there.
        self.container.seek(
            int(max(t - self.period, 0) / self.stream.time_base), stream=self.stream
        )
        self._frames = self.container.decode(self.stream)
        self._current = None

    def _advance(self) -> None:
        frame = next(self._frames, None)
        if frame is None:
            raise EpisodeError(f"video {self.path.name} ends before {self.start_s:.3f} s + episode")
        self._current = (float(frame.time), frame)

    def read(self, times: Sequence[float]) -> np.ndarray:
        """RGB uint8 frames at episode times `times` (ascending), each the nearest decoded one."""
        out = []
        tolerance = self.period / 2
        for t in times:
            target = self.start_s + float(t)
            if self._frames is None or (self._current and self._current[0] > target + tolerance):
                self._seek(target)
            if self._current is None:
                self._advance()
            while self._current[0] < target - tolerance:
                self._advance()
            if abs(self._current[0] - target) > tolerance:
                raise EpisodeError(
                    f"video {self.path.name} has no frame at {target:.3f} s "
                    f"(nearest {self._current[0]:.3f} s)"
                )
            out.append(self._current[1].to_ndarray(format="rgb24"))
        return np.stack(out)
