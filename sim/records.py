"""What an evaluation leaves: eval_info.json (LeRobot's layout), mp4 videos, ALOHA episodes."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import imageio_ffmpeg
import numpy as np

from sim.rollout import EpisodeResult
from sim.world import ACTION_DIM, FPS, HEIGHT, WIDTH, Observation

VIDEO_CAMERA = "top"


def _partial(path: Path) -> Path:
    # A hidden name beside the final one, keeping the suffix (ffmpeg picks the container by it).
    return path.with_name(f".{path.name}")


def eval_info(
    results: Sequence[EpisodeResult], eval_s: float, videos: Sequence[str], setup: dict
) -> dict[str, Any]:
    """LeRobot's eval_info.json: per episode, aggregated, video paths; plus what was run."""
    n = max(len(results), 1)
    return {
        "per_episode": [
            {
                "episode_ix": r.episode_ix,
                "sum_reward": r.sum_reward,
                "max_reward": r.max_reward,
                "success": r.success,
                "seed": r.seed,
            }
            for r in results
        ],
        "aggregated": {
            "avg_sum_reward": sum(r.sum_reward for r in results) / n,
            "avg_max_reward": sum(r.max_reward for r in results) / n,
            "pc_success": 100.0 * sum(r.success for r in results) / n,
            "eval_s": eval_s,
            "eval_ep_s": eval_s / n,
        },
        "video_paths": list(videos),
        "setup": setup,
    }


def write_json(path: Path, data: dict) -> None:
    """Written beside, then renamed into place: never a half-written file."""
    partial = _partial(path)
    partial.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, path)


class VideoSink:
    """An episode's `top` frames as an H.264 mp4 at the simulator's 50 fps."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._partial = _partial(path)
        self._writer = imageio_ffmpeg.write_frames(
            str(self._partial), (WIDTH, HEIGHT), fps=FPS, codec="libx264", macro_block_size=16
        )
        self._writer.send(None)  # start ffmpeg
        self._done = False

    def step(self, obs: Observation, action: np.ndarray) -> None:
        self._writer.send(obs.images[VIDEO_CAMERA])

    def end(self, obs: Observation) -> None:
        self._writer.send(obs.images[VIDEO_CAMERA])
        self._writer.close()
        os.replace(self._partial, self.path)
        self._done = True

    def close(self) -> None:
        if not self._done:
            self._writer.close()
            self._partial.unlink(missing_ok=True)


class AlohaEpisodeSink:
    """One episode in the layout of ALOHA's simulation recorder: `/observations/images/top`
    (T, 480, 640, 3) uint8 one frame per chunk, `/observations/qpos`, `/observations/qvel`,
    `/action` (T, 14), root attribute `sim`; row t is the observation action t was chosen
    from. Frames are gzip-compressed (lossless, read back by any HDF5 reader unchanged)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._partial = _partial(path)
        self._file = h5py.File(self._partial, "w")
        self._file.attrs["sim"] = True
        frame = (HEIGHT, WIDTH, 3)
        self._data = {
            "observations/images/top": self._file.create_dataset(
                "observations/images/top",
                (0, *frame),
                np.uint8,
                maxshape=(None, *frame),
                chunks=(1, *frame),
                compression="gzip",
                compression_opts=1,
            ),  # fmt: skip
            **{
                name: self._file.create_dataset(
                    name, (0, ACTION_DIM), np.float64, maxshape=(None, ACTION_DIM)
                )
                for name in ("observations/qpos", "observations/qvel", "action")
            },
        }
        self._done = False
        self.steps = 0

    def step(self, obs: Observation, action: np.ndarray) -> None:
        row = {
            "observations/images/top": obs.images[VIDEO_CAMERA],
            "observations/qpos": obs.qpos,
            "observations/qvel": obs.qvel,
            "action": action,
        }
        for name, value in row.items():
            data = self._data[name]
            data.resize(self.steps + 1, axis=0)
            data[self.steps] = value
        self.steps += 1

    def end(self, obs: Observation) -> None:
        self._file.close()
        os.replace(self._partial, self.path)
        self._done = True

    def close(self) -> None:
        if not self._done:
            self._file.close()
            self._partial.unlink(missing_ok=True)
