"""The learning check's data and run: generated episodes whose actions follow the image."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from shards.reader import StreamConfig, make_loader
from shards.source import open_shard_set
from stats.normalize import bounds, normalize
from tests.episode_fixtures import make_episodes, run_convert
from trainer.inference.predict import PredictConfig, PredictReport, compare
from trainer.run.checkpoint import latest_checkpoint
from trainer.run.loop import train
from trainer.run.train_config import TrainConfig

EPISODES = 9  # 8 to train on, 1 held out as the val split
EPISODE_STEPS = 24
CAMERAS = ("head", "left_wrist")  # vla-train's default --cameras
IMAGE_FIELDS = ("head_camera_image", "left_wrist_image")  # the processed layout's names
INSTRUCTION = "follow the red square"
STEPS = 400
BATCH = 8
CURVE_FILE = Path(__file__).parent / "assets" / "tiny_learning_curve.json"
CURVE_EVERY = 10
SEED = 7  # the committed curve was recorded with it, when it was vla-train's default
# OFT's schedule, shortened to the check's 400 steps: the learning rate drops 10x three
# quarters of the way through, as OFT's LIBERO recipe drops it at 100k of 150k steps (its
# default of 40000 never comes in 400 steps, and at a constant rate the loss stops falling).
DECAY_STEP = 300
# What learning means here: L1 over the best constant prediction's L1 on the same split.
# The bounds are the 9-seed aim (docs/LEARNING.md: every one of 3 x 3 seeds is below them).
TRAIN_BOUND = 0.15  # train split, at the evaluation view: below this
HELD_BOUND = 0.3  # the held-out episode: below this
BLANK_BOUND = 0.8  # the held-out episode when every image is one fixed frame: above this
# How far the smoothed loss may stray from the committed curve: CPU runs differ in the last
# bits with the thread count, and the 50-step mean keeps that well under this, while a
# model that stopped reading the image stays near the constant's 0.63 (0.4 above the curve).
CURVE_TOLERANCE = 0.06


def learning_set(root: Path, blank_images: bool = False, seed: int = 0) -> Path:
    """Episodes of `vla-data generate`, converted at the model's 224 px; one held out.

    The red square's place in each frame determines the whole action chunk, and each episode
    starts its sweep elsewhere, so the held-out episode shows places never trained on.
    With `blank_images` every frame of every camera is replaced by one fixed frame: the
    actions are unchanged, but nothing in the images says anything about them. `seed` is
    the generator's (texture and action noise).
    """
    paths = make_episodes(
        root / "episodes", episodes=EPISODES, steps=EPISODE_STEPS, image_size=(224, 224),
        cameras=CAMERAS, seed=seed,
    )  # fmt: skip
    for path in paths:
        with h5py.File(path, "r+") as f:
            # One task, so one instruction: the generator's name each episode's index, which
            # is for tests that check pairing, and would be a per-episode nuisance here.
            for key in ("seen", "unseen"):
                del f[key]
                f.create_dataset(key, data=[INSTRUCTION], dtype=h5py.string_dtype("utf-8"))
            if blank_images:
                blank_frames(f, IMAGE_FIELDS)
    shards = root / "shards"
    run_convert(root / "episodes", shards, image_size=224, val_episodes=1, shard_samples=48)
    return shards


def blank_frames(f: h5py.File, names: tuple[str, ...]) -> None:
    """Every frame of these cameras becomes the first one: the images say nothing."""
    for name in names:
        f[name][...] = f[name][0]


def train_tiny(
    shards: Path,
    run_dir: Path,
    steps: int = STEPS,
    seed: int = SEED,
    resume: bool = False,
    **options,
) -> TrainConfig:
    """vla-train with its defaults, except the tiny base, the steps, the batch size, the seed,
    the decay step (DECAY_STEP) and `options` (TrainConfig fields); with `resume`, on from
    the run's newest step-N."""
    options = {"decay_step": DECAY_STEP, **options}
    cfg = TrainConfig(
        shards=(str(shards),), run_dir=run_dir, base="tiny", max_steps=steps, batch_size=BATCH,
        seed=seed, **options,
    )  # fmt: skip
    train(cfg, resume=resume)
    return cfg


def curve(records: list[dict]) -> list[float]:
    """The smoothed train loss at every CURVE_EVERY-th step: what the reference curve holds."""
    return [r["loss_smooth"] for r in records if r["step"] % CURVE_EVERY == 0]


def predicted_l1(shards: Path, run_dir: Path, split: str) -> float:
    """vla-train predict's normalized L1 over a whole split, seen as at evaluation (no aug)."""
    return predict_split(shards, latest_checkpoint(run_dir), split).l1_normalized


def predict_split(shards: Path, ckpt: Path, split: str) -> PredictReport:
    """vla-train predict over a whole split: the L1 in action units and normalized."""
    return compare(PredictConfig(ckpt=ckpt, shards=str(shards), split=split, samples=0))


def best_constant_l1(shards: Path, split: str) -> float:
    """L1 of the best constant chunk (per row and dim: the median) on a split's valid rows."""
    shard_set = open_shard_set(shards)
    # The samples vla-train predict reads for a run with the default --episode-tail.
    drop_tail = TrainConfig.episode_tail == "drop"
    # Only the actions matter, so any camera the set has will do (the default pair may not).
    cameras = shard_set.manifest.cameras[:1]
    stream = StreamConfig(
        split=split, batch_size=64, finite=True, drop_tail=drop_tail, cameras=cameras
    )
    loader = make_loader(shard_set, stream)
    batches = list(loader)
    actions = np.concatenate([b["actions"].numpy() for b in batches])
    valid = np.concatenate([b["valid"].numpy() for b in batches])
    y = normalize(actions, bounds(shard_set.stats.action, "bounds_q99"))
    errors, count = 0.0, 0
    for row in range(y.shape[1]):
        values = y[valid > row, row]  # (samples, D)
        errors += np.abs(values - np.median(values, axis=0)).sum()
        count += values.size
    return errors / count
