"""The OFT+ inputs are learned from: the robot state with --proprio, the instruction with --film."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
from episode_fixtures import make_episodes, run_convert
from learning_fixtures import (
    CAMERAS,
    EPISODE_STEPS,
    best_constant_l1,
    blank_frames,
    predicted_l1,
    train_tiny,
)

from trainer.inference.policy import Policy

STEPS = 200
ALOHA_IMAGES = ("observations/images/cam_high", "observations/images/cam_left_wrist")
INSTRUCTIONS = ("pick up the red cup", "push the blue block")


def state_set(root: Path) -> Path:
    """ALOHA episodes whose images are blank: the state (qpos, the last step's command) and
    nothing else tells where the arm goes next."""
    paths = make_episodes(root / "episodes", layout="aloha", episodes=9, steps=EPISODE_STEPS,
                          image_size=(224, 224), cameras=CAMERAS)  # fmt: skip
    for path in paths:
        with h5py.File(path, "r+") as f:
            blank_frames(f, ALOHA_IMAGES)
    shards = root / "shards"
    run_convert(root / "episodes", shards, image_size=224, val_episodes=1, shard_samples=48,
                instruction="follow the square")  # fmt: skip
    return shards


def test_the_state_is_learned_with_proprio_and_not_without(tmp_path):
    shards = state_set(tmp_path / "data")
    constant = best_constant_l1(shards, "val")
    with_state = tmp_path / "with"
    train_tiny(shards, with_state, steps=STEPS, proprio=True)
    without = tmp_path / "without"
    train_tiny(shards, without, steps=STEPS, proprio=False)
    learned = predicted_l1(shards, with_state, "val")
    blind = predicted_l1(shards, without, "val")
    report = f"with the state {learned:.3f}, without {blind:.3f}, constant {constant:.3f}"
    assert learned < 0.5 * constant, report
    assert blind > 0.8 * constant, report


def instruction_set(root: Path) -> Path:
    """Identical images everywhere; even episodes do one thing, odd ones another, and only
    the instruction says which."""
    paths = make_episodes(root / "episodes", episodes=8, steps=EPISODE_STEPS,
                          image_size=(224, 224), cameras=CAMERAS)  # fmt: skip
    rng = np.random.default_rng(0)
    for i, path in enumerate(paths):
        with h5py.File(path, "r+") as f:
            blank_frames(f, ("head_camera_image", "left_wrist_image"))
            sign = 1.0 if i % 2 == 0 else -1.0
            pattern = sign * np.linspace(-0.5, 0.5, f["action"].shape[1])
            f["action"][...] = pattern + rng.normal(0, 0.02, f["action"].shape)
            for key in ("seen", "unseen"):
                del f[key]
                f.create_dataset(key, data=[INSTRUCTIONS[i % 2]], dtype=h5py.string_dtype())
    shards = root / "shards"
    run_convert(root / "episodes", shards, image_size=224, val_episodes=0, shard_samples=48)
    return shards


def test_with_film_the_instruction_is_learned_and_changes_the_output(tmp_path):
    shards = instruction_set(tmp_path / "data")
    run = tmp_path / "run"
    train_tiny(shards, run, steps=STEPS, film=True)
    learned, constant = (
        predicted_l1(shards, run, "train"),
        best_constant_l1(shards, "train"),
    )
    assert learned < 0.3 * constant, f"{learned:.3f} vs the constant's {constant:.3f}"
    policy = Policy.load(run / f"step-{STEPS}", device="cpu")
    with h5py.File(tmp_path / "data" / "episodes" / "episode_0.hdf5", "r") as f:
        images = {"head": f["head_camera_image"][0], "left_wrist": f["left_wrist_image"][0]}
    a, b = (policy.predict(images, text) for text in INSTRUCTIONS)
    assert np.abs(a - b).mean() > 0.3, "the same images gave the same actions for both tasks"
