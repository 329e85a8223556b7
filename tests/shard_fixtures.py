"""Tiny shard sets written with the shard contract's own writer, with learnable actions."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np

from shards.format import (
    STATS_FILE,
    JpegStorage,
    camera_member,
    encode_actions,
    encode_jpeg,
    encode_meta,
    sample_key,
)
from shards.manifest import Manifest, ShardEntry, write_manifest
from shards.writer import ShardWriter, sample_tar_bytes
from stats.compute import dataset_stats
from stats.io import write_stats

TOY_DATASET = "toy"
TOY_CAMERAS = ("head", "left_wrist", "right_wrist")
TOY_INSTRUCTIONS = ["pick up the cup", "grab the cup", "lift the cup"]
JPEG = JpegStorage(90)


def toy_episode(
    rng: np.random.Generator, steps: int, action_dim: int, action_scale: float = 1.0
) -> tuple[np.ndarray, ...]:
    """Brightness levels per step and actions that follow them: learnable from the images."""
    start = rng.uniform(0.1, 0.6)
    levels = start + 0.3 * np.arange(steps) / steps
    weights = action_scale * np.linspace(-1.0, 2.0, action_dim)
    actions = (levels[:, None] * weights[None, :]).astype(np.float32)
    return levels, actions


def write_toy_shards(
    root: Path,
    *,
    train_episodes: int = 4,
    val_episodes: int = 1,
    steps: int = 16,
    chunk: int = 4,
    action_dim: int = 3,
    seed: int = 0,
    dataset: str = TOY_DATASET,
    action_scale: float = 1.0,
    no_normalize: tuple[int, ...] = (),
) -> Path:
    """A shard set of one shard per episode; sample keys `ep{i}_{t:06d}`; returns `root`.

    `dataset` and `action_scale` make sets to mix: other names, other action ranges.
    `no_normalize`: the action dims its statistics' mask leaves raw.
    """
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    splits: dict[str, list[ShardEntry]] = {}
    train_actions = []
    for split, count, first in (("train", train_episodes, 0), ("val", val_episodes, 100)):
        writer = ShardWriter(root, split, shard_samples=steps)
        for i in range(first, first + count):
            levels, actions = toy_episode(rng, steps, action_dim, action_scale)
            if split == "train":
                train_actions.append(actions)
            for t in range(steps):
                writer.add(_toy_sample(f"ep{i}", t, levels, actions, chunk, dataset))
        splits[split] = [ShardEntry(**vars(r)) for r in writer.close()]
    stats = dataset_stats(train_actions, no_normalize=no_normalize)
    write_stats(root / STATS_FILE, dataset, stats)
    manifest = Manifest(
        dataset=dataset,
        tool_version="test",
        layout="processed",
        cameras=list(TOY_CAMERAS),
        chunk=chunk,
        action_dim=action_dim,
        proprio_dim=None,
        image_size=224,
        options={},
        splits=splits,
    )
    write_manifest(root, manifest)
    return root


def no_sample_decodes(root: Path) -> Path:
    """Edit a toy set's manifest image size: every stored JPEG is then the wrong size."""
    path = root / "manifest.json"
    path.write_text(path.read_text().replace('"image_size": 224', '"image_size": 112'))
    return root


def break_jpegs(shard: Path, count: int = 1) -> list[str]:
    """Overwrite the middle of `count` samples' head.jpg with garbage; returns their keys."""
    with tarfile.open(shard) as tar:
        members = [m for m in tar.getmembers() if m.name.endswith(".head.jpg")][:count]
    with open(shard, "r+b") as f:
        for member in members:
            f.seek(member.offset_data + 20)
            f.write(b"\xff\xd9" + b"\x00" * 64)
    return [m.name.split(".")[0] for m in members]


def nan_statistic(root: Path) -> Path:
    """Put a NaN into a toy set's stats.json: action q99, dimension 1."""
    path = root / STATS_FILE
    data = json.loads(path.read_text())
    data[TOY_DATASET]["action"]["q99"][1] = float("nan")
    path.write_text(json.dumps(data))
    return root


def _toy_sample(
    episode: str, t: int, levels: np.ndarray, actions: np.ndarray, chunk: int, dataset: str
) -> bytes:
    steps = len(levels)
    rows = np.minimum(np.arange(t, t + chunk), steps - 1)  # past the end: repeat the last row
    level = int(levels[t] * 255)
    members = {
        camera_member("head"): encode_jpeg(
            np.full((224, 224, 3), level, np.uint8), JpegStorage(90)
        ),
        camera_member("left_wrist"): encode_jpeg(
            np.full((224, 224, 3), 255 - level, np.uint8), JpegStorage(90)
        ),
        camera_member("right_wrist"): encode_jpeg(
            np.zeros((224, 224, 3), np.uint8), JpegStorage(90)
        ),
        "actions.npy": encode_actions(actions[rows]),
        "meta.json": encode_meta(
            {
                "episode": episode,
                "t": t,
                "steps": steps,
                "valid": int(min(chunk, steps - t)),
                "instructions": TOY_INSTRUCTIONS,
                "unseen": [],
                "dataset": dataset,
            }
        ),
    }
    return sample_tar_bytes(sample_key(episode, t), members)
