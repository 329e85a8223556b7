"""The LeRobot v3 side of bench/loader.py: the same episodes through LeRobot's own writer and
its own Dataset, when the `lerobot` package is installed (it is not one of our dependencies).

Frames are stored at 224x224, as our shards store them, so LeRobot's loader decodes what
ours decodes and resizes nothing; it tokenizes nothing either. Both favour LeRobot.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import h5py
import numpy as np
from PIL import Image
from torch.utils.data import DataLoader

SIDE = 224
FPS = 10
CHUNK = 8
# Our generator's camera datasets -> LeRobot feature names, as an ALOHA recording names them.
FEATURES = {"head_camera_image": "observation.images.cam_high",
            "left_wrist_image": "observation.images.cam_left_wrist"}  # fmt: skip


def installed() -> bool:
    return importlib.util.find_spec("lerobot") is not None


def write_dataset(paths: list[Path], root: Path) -> None:
    """LeRobotDataset.create + add_frame + save_episode + finalize: its own writer (AV1 video)."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    with h5py.File(paths[0], "r") as f:
        action_dim = f["action"].shape[1]
    video = {"dtype": "video", "shape": (SIDE, SIDE, 3), "names": ["height", "width", "channels"]}
    features = {"action": {"dtype": "float32", "shape": (action_dim,), "names": None}}
    features |= {name: video for name in FEATURES.values()}
    ds = LeRobotDataset.create(repo_id="local/bench", fps=FPS, root=root, features=features)
    for path in paths:
        with h5py.File(path, "r") as f:
            task = f["seen"][0].decode()
            actions = f["action"][()].astype(np.float32)
            frames = {key: f[name][()] for name, key in FEATURES.items()}
        for t in range(len(actions)):
            frame = {key: _resized(images[t]) for key, images in frames.items()}
            ds.add_frame({"action": actions[t], "task": task, **frame})
        ds.save_episode()
    ds.finalize()


def _resized(frame: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(frame).resize((SIDE, SIDE), Image.Resampling.BICUBIC))


def data_loader(root: Path, workers: int, batch_size: int) -> DataLoader:
    """LeRobot's Dataset as its training script feeds it: 8-step action chunks, shuffled."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    chunk = {"action": [t / FPS for t in range(CHUNK)]}
    ds = LeRobotDataset("local/bench", root=root, delta_timestamps=chunk)
    return DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers)
