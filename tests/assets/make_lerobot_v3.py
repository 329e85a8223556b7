"""Writes tests/assets/lerobot_v3/ with LeRobot's own dataset writer, and what it was given.

Made once, in a venv of its own (LeRobot's v3.0 writer needs a torch older than ours), from the
repository root:

    ~/.pyenv/versions/3.12.1/bin/python -m venv /tmp/lerobot-venv
    /tmp/lerobot-venv/bin/pip install 'lerobot[dataset]==0.6.1'
    rm -rf tests/assets/lerobot_v3 tests/assets/lerobot_v3_truth
    HF_HUB_OFFLINE=1 /tmp/lerobot-venv/bin/python tests/assets/make_lerobot_v3.py tests/assets

It writes `lerobot_v3/`, the dataset exactly as LeRobotDataset.create(...).add_frame(...)
.save_episode() and finalize() leave it (default video encoder settings), and beside it
`lerobot_v3_truth/`: what the writer was given (`vectors.npz`: per episode `action_<e>` and
`state_<e>`; `given.png`: the frames) and the frames LeRobot's own reader decodes back
(`decoded.png`), with `truth.json` (tasks, lengths, how the PNGs are laid out and the versions
that wrote it). Frames are PNG strips rather than arrays: lossless, smaller, and viewable.
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np

FPS = 50  # ALOHA's rate: frame times are not round in binary, as in real recordings
HEIGHT, WIDTH = 32, 48
DIM = 14  # ALOHA: 6 joints and a gripper per arm
CAMERAS = ("cam_high", "cam_left_wrist")
# The third episode repeats the first task, so a task's index differs from its episode's.
EPISODES = (
    (10, "pick up the red cube"),
    (8, "put the cube in the bowl"),
    (12, "pick up the red cube"),
)


def frames(steps: int, seed: int) -> np.ndarray:
    """(T, H, W, 3) ramps: red grows down, green right, blue steps per seed and frame.

    Nothing is symmetric, so a frame turned over or with red and blue swapped is far from the
    truth, and so is a neighbouring frame or another episode's.
    """
    out = np.empty((steps, HEIGHT, WIDTH, 3), np.uint8)
    out[..., 0] = np.linspace(20, 235, HEIGHT)[:, None]
    out[..., 1] = np.linspace(30, 200, WIDTH)[None, :]
    for t in range(steps):
        out[t, ..., 2] = (40 + 101 * seed + 37 * t) % 256
    return out


def features() -> dict:
    vector = {"dtype": "float32", "shape": (DIM,), "names": None}
    image = {
        "dtype": "video",
        "shape": (HEIGHT, WIDTH, 3),
        "names": ["height", "width", "channels"],
    }
    cameras = {f"observation.images.{c}": dict(image) for c in CAMERAS}
    return {"action": vector, "observation.state": dict(vector), **cameras}


def write(root: Path) -> dict[str, np.ndarray]:
    """The dataset through LeRobot's writer; returns what it was given, by array name."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset.create(
        repo_id="local/aloha_tiny", fps=FPS, root=root, robot_type="aloha", features=features()
    )
    given = {}
    rng = np.random.default_rng(0)
    for e, (steps, task) in enumerate(EPISODES):
        given[f"action_{e}"] = rng.normal(size=(steps, DIM)).astype(np.float32)
        given[f"state_{e}"] = rng.normal(size=(steps, DIM)).astype(np.float32)
        for i, camera in enumerate(CAMERAS):
            given[f"{camera}_{e}"] = frames(steps, 2 * e + i)
        for t in range(steps):
            frame = {"action": given[f"action_{e}"][t], "observation.state": given[f"state_{e}"][t]}
            for camera in CAMERAS:
                frame[f"observation.images.{camera}"] = given[f"{camera}_{e}"][t]
            ds.add_frame({**frame, "task": task})
        ds.save_episode()
    ds.finalize()
    return given


def read_back(root: Path) -> dict[str, np.ndarray]:
    """Every episode's frames as LeRobot's own reader decodes them (PyAV backend), uint8."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset("local/aloha_tiny", root=root, video_backend="pyav")
    decoded: dict[str, list[np.ndarray]] = {}
    for i in range(len(ds)):
        item = ds[i]
        e = int(item["episode_index"])
        for camera in CAMERAS:
            chw = item[f"observation.images.{camera}"].numpy()  # float in [0, 1], uint8 / 255
            hwc = np.round(chw.transpose(1, 2, 0) * 255).astype(np.uint8)
            decoded.setdefault(f"{camera}_{e}", []).append(hwc)
    return {name: np.stack(frames) for name, frames in decoded.items()}


def save_strip(path: Path, frames_by_name: dict[str, np.ndarray]) -> None:
    """One PNG: every episode's frames one below the other, cameras side by side."""
    from PIL import Image

    rows = [
        np.concatenate([frames_by_name[f"{c}_{e}"] for c in CAMERAS], axis=2)
        for e in range(len(EPISODES))
    ]
    Image.fromarray(np.concatenate(rows).reshape(-1, WIDTH * len(CAMERAS), 3)).save(path)


def main(out: Path) -> None:
    root, truth = out / "lerobot_v3", out / "lerobot_v3_truth"
    given = write(root)
    truth.mkdir()
    vectors = {k: v for k, v in given.items() if k.startswith(("action_", "state_"))}
    np.savez(truth / "vectors.npz", **vectors)
    save_strip(truth / "given.png", given)
    save_strip(truth / "decoded.png", read_back(root))
    facts = {
        "written_by": {p: version(p) for p in ("lerobot", "torch", "av", "pyarrow")},
        "fps": FPS,
        "cameras": list(CAMERAS),
        "frame_shape": [HEIGHT, WIDTH],
        "episodes": [{"length": steps, "task": task} for steps, task in EPISODES],
        "frames": f"PNG rows: each episode's frames in order, {HEIGHT} px each; "
        f"columns: the cameras in order, {WIDTH} px each",
    }
    (truth / "truth.json").write_text(json.dumps(facts, indent=2) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
