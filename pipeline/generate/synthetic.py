"""Write small synthetic episodes in the exact processed, RoboTwin 2.0 and ALOHA layouts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import simplejpeg

from common.errors import ConfigError
from pipeline.inputs import aloha, processed, robotwin
from shards.format import CAMERAS

LAYOUTS = ("processed", "robotwin", "aloha")  # the layouts generate writes
# Canonical camera name -> dataset path, per layout.
CAMERA_PATHS = {
    "processed": processed.CAMERA_PATHS,
    "robotwin": robotwin.CAMERA_PATHS,
    "aloha": aloha.CAMERA_PATHS,
}

DEFAULT_IMAGE_SIZE = {"processed": (256, 256), "robotwin": (240, 320), "aloha": (480, 640)}
ACTION_DIM = 14
RED = (255, 0, 0)
GREY = 128
SQUARE_SIDE = 0.4  # of the shorter image side
EPISODE_PHASE = 0.37  # where each episode's sweep starts, as a fraction: spread, never repeating
SEEN_TEMPLATES = (
    "pick up the red block {i}",
    "grab red block {i} from the table",
    "lift the red block number {i}",
)
UNSEEN_TEMPLATES = ("raise red block {i} off the table",)

Images = dict[str, np.ndarray]  # canonical camera name -> uint8 (T, H, W, 3)


@dataclass
class GenerateConfig:
    """What sample episodes to write and where."""

    out_dir: Path
    """Folder to write into (created if missing); robotwin writes data/ and instructions/ here."""
    layout: str = "processed"
    """One of LAYOUTS."""
    episodes: int = 4
    """Number of episodes."""
    steps: int = 40
    """Time steps per episode."""
    seed: int = 0
    """Seed for the texture and action noise; the same seed gives the same files."""
    image_size: tuple[int, int] | None = None
    """(H, W) of every camera; None uses the layout's real size (DEFAULT_IMAGE_SIZE)."""
    cameras: tuple[str, ...] = CAMERAS
    """Canonical camera names to write."""
    aloha_jpeg: bool = False
    """ALOHA only: store one JPEG per row (zero-padded uint8 rows, as real ALOHA) not raw arrays."""

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        if self.layout not in LAYOUTS:
            raise ConfigError(f"Unknown layout {self.layout!r}; use one of {', '.join(LAYOUTS)}.")
        if self.episodes < 1 or self.steps < 1:
            raise ConfigError("Episodes and steps must both be at least 1.")
        if self.seed < 0:
            raise ConfigError("--seed must not be negative.")
        if self.image_size is None:
            self.image_size = DEFAULT_IMAGE_SIZE[self.layout]
        self.image_size = tuple(self.image_size)
        if len(self.image_size) != 2 or min(self.image_size) < 16:
            raise ConfigError(
                f"Image size must be (H, W) with both at least 16, got {self.image_size}."
            )
        self.cameras = tuple(self.cameras)
        unknown = [c for c in self.cameras if c not in CAMERAS]
        if unknown or not self.cameras or len(set(self.cameras)) != len(self.cameras):
            raise ConfigError(
                f"Cameras must be distinct names from {', '.join(CAMERAS)}, got {self.cameras}."
            )
        if self.aloha_jpeg and self.layout != "aloha":
            raise ConfigError("aloha_jpeg applies only to the aloha layout.")


def square_box(
    camera: str, t: int, steps: int, image_size: tuple[int, int], episode: int = 0
) -> tuple[slice, slice]:
    """Rows and columns of the red square in frame t of a camera (tests check colours there)."""
    height, width = image_size
    side = int(min(height, width) * SQUARE_SIDE)
    k = CAMERAS.index(camera)
    # Each camera sees the square on its own row band and phase, sweeping left to right over time.
    top = (height - side) * (k + 1) // (len(CAMERAS) + 1)
    left = round((width - side) * _progress(t, steps, episode, 0.25 * k))
    return slice(top, top + side), slice(left, left + side)


def _progress(t: int | np.ndarray, steps: int, episode: int, offset: float = 0.0):
    """Where the square is along its sweep, in [0, 1): each episode starts at its own place."""
    return (t / steps + EPISODE_PHASE * episode + offset) % 1.0


def episode_actions(index: int, steps: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth (steps, 14) joint targets that follow the square in the head camera.

    Each joint is a periodic function of the square's place in its sweep, so the whole action
    chunk at step t can be read off frame t: a policy learns it only by looking at the image.
    """
    progress = _progress(np.arange(steps), steps, index)[:, None]
    joint = np.arange(ACTION_DIM)[None, :]
    angle = 2 * np.pi * progress
    # One period per sweep, each joint at its own phase: a training crop shifts the square by
    # up to ~3% of the sweep, which then moves the targets by little, so the image stays
    # a sharp cue under OFT's augmentation.
    phase = 2 * np.pi * joint / ACTION_DIM
    actions = 0.3 * joint / ACTION_DIM + 0.5 * np.sin(angle + phase)
    actions += rng.normal(0.0, 0.01, actions.shape)
    # Grippers (left 6, right 13) open and close within [0, 1] like the real ones.
    for g in (6, 13):
        actions[:, g] = 0.5 + 0.5 * np.sin(angle[:, 0] + g)
    return actions


def camera_frames(
    camera: str, steps: int, image_size: tuple[int, int], seed: int, episode: int
) -> np.ndarray:
    """uint8 (steps, H, W, 3): a pure red square moving over a mildly textured grey background.

    The texture belongs to the camera (the same scene in every episode), as on a real rig.
    """
    texture = np.random.default_rng([seed, CAMERAS.index(camera)])
    noise = texture.integers(-6, 7, size=(*image_size, 3))
    background = (GREY + noise).astype(np.uint8)
    frames = np.repeat(background[None], steps, axis=0)
    for t in range(steps):
        rows, cols = square_box(camera, t, steps, image_size, episode)
        frames[t, rows, cols] = RED
    return frames


def instructions(index: int) -> dict[str, list[str]]:
    """Seen and unseen instructions that name the episode index, so pairing errors show."""
    return {
        "seen": [s.format(i=index) for s in SEEN_TEMPLATES],
        "unseen": [s.format(i=index) for s in UNSEEN_TEMPLATES],
    }


def generate(config: GenerateConfig) -> list[Path]:
    """Write config.episodes episodes and return their paths in index order."""
    rng = np.random.default_rng(config.seed)
    writer = {"processed": _write_processed, "robotwin": _write_robotwin, "aloha": _write_aloha}
    paths = []
    for index in range(config.episodes):
        actions = episode_actions(index, config.steps, rng)
        images = {
            c: camera_frames(c, config.steps, config.image_size, config.seed, index)
            for c in config.cameras
        }
        paths.append(writer[config.layout](config, index, actions, images))
    return paths


def _raw_images(f: h5py.File, layout: str, images: Images) -> None:
    for camera, frames in images.items():
        # One chunk per frame, as the real writers do, so readers can slice cheaply.
        f.create_dataset(CAMERA_PATHS[layout][camera], data=frames, chunks=(1, *frames.shape[1:]))


def _jpegs(frames: np.ndarray, colorspace: str) -> list[bytes]:
    return [simplejpeg.encode_jpeg(im, quality=90, colorspace=colorspace) for im in frames]


def _write_processed(
    config: GenerateConfig, index: int, actions: np.ndarray, images: Images
) -> Path:
    path = config.out_dir / f"episode_{index}.hdf5"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = instructions(index)
    with h5py.File(path, "w") as f:
        _raw_images(f, "processed", images)
        f.create_dataset("action", data=actions.astype(np.float32))
        for key in ("seen", "unseen"):
            f.create_dataset(key, data=text[key], dtype=h5py.string_dtype("utf-8"))
    return path


def _write_robotwin(
    config: GenerateConfig, index: int, actions: np.ndarray, images: Images
) -> Path:
    path = config.out_dir / "data" / f"episode{index}.hdf5"
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for camera, frames in images.items():
            # cv2.imencode(rgb) reads the channels as BGR; encoding with colorspace="BGR" writes
            # byte-identical colour order, so red is stored as OpenCV's collector would store it.
            encoded = _jpegs(frames, "BGR")
            width = max(len(b) for b in encoded)
            f.create_dataset(CAMERA_PATHS["robotwin"][camera], data=np.array(encoded, f"S{width}"))
        joint = f.create_group("joint_action")
        joint["left_arm"] = actions[:, :6]
        joint["left_gripper"] = actions[:, 6]
        joint["right_arm"] = actions[:, 7:13]
        joint["right_gripper"] = actions[:, 13]
        joint["vector"] = actions
    instruction_file = config.out_dir / "instructions" / f"episode{index}.json"
    instruction_file.parent.mkdir(parents=True, exist_ok=True)
    instruction_file.write_text(json.dumps(instructions(index), indent=1), encoding="utf-8")
    return path


def _write_aloha(config: GenerateConfig, index: int, actions: np.ndarray, images: Images) -> Path:
    path = config.out_dir / f"episode_{index}.hdf5"
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.attrs["sim"] = True
        if config.aloha_jpeg:
            for camera, frames in images.items():
                encoded = _jpegs(frames, "RGB")
                rows = np.zeros((len(encoded), max(len(b) for b in encoded)), np.uint8)
                for row, data in zip(rows, encoded, strict=True):
                    row[: len(data)] = np.frombuffer(data, np.uint8)
                name = CAMERA_PATHS["aloha"][camera]
                f.create_dataset(name, data=rows, chunks=(1, rows.shape[1]))
        else:
            _raw_images(f, "aloha", images)
        # The measured joints trail the commanded ones by a step, as on the real robot.
        qpos = np.concatenate([actions[:1], actions[:-1]])
        f["observations/qpos"] = qpos
        f["observations/qvel"] = np.diff(qpos, axis=0, prepend=qpos[:1])
        f["action"] = actions
    return path
