"""Tiny episode folders and shard-set readers shared by the converter, CLI and stats tests."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import h5py
import numpy as np

from pipeline.config import ConvertConfig
from pipeline.convert.stages import ConvertSummary, convert
from pipeline.generate.synthetic import GenerateConfig, generate
from pipeline.inputs import aloha, processed, robotwin
from shards.format import STATS_FILE
from shards.manifest import read_manifest
from shards.samples import decode_sample, iter_raw_samples

SMALL = (32, 48)  # (H, W) of generated frames: small keeps every conversion well under a second
STEPS = 12
CHUNK = 8
IMAGE = 32  # stored image side for tests that do not look at image quality

ACTION_PATHS = {
    "processed": processed.ACTION_PATH,
    "robotwin": robotwin.ACTION_PATH,
    "aloha": aloha.ACTION_PATH,
}
PROPRIO_PATHS = {"aloha": aloha.PROPRIO_PATH}


def make_episodes(
    folder: Path,
    layout: str = "processed",
    episodes: int = 4,
    steps: int = STEPS,
    image_size: tuple[int, int] = SMALL,
    **kwargs,
) -> list[Path]:
    config = GenerateConfig(
        folder, layout=layout, episodes=episodes, steps=steps, image_size=image_size, **kwargs
    )
    return generate(config)


def run_convert(episodes_dir: Path, shards_dir: Path, **options) -> ConvertSummary:
    """convert() with test defaults: one worker, no progress bars, small images."""
    defaults = {"workers": 1, "progress": False, "image_size": IMAGE, "chunk": CHUNK}
    return convert(ConvertConfig(episodes_dir, shards_dir=shards_dir, **{**defaults, **options}))


def read_split(shards_dir: Path, split: str) -> list[dict]:
    """Every decoded sample of a split, in shard order, each with the shard it came from."""
    manifest = read_manifest(shards_dir)
    samples = []
    for shard in manifest.shards(split):
        with open(shards_dir / shard.name, "rb") as stream:
            for raw in iter_raw_samples(stream, shard.name):
                sample = decode_sample(raw, manifest.cameras, manifest)
                sample["shard"] = shard.name
                sample["members"] = sorted(k for k in raw if not k.startswith("__"))
                samples.append(sample)
    return samples


def read_dataset(path: Path, name: str) -> np.ndarray:
    with h5py.File(path, "r") as f:
        return f[name][()]


def source_actions(path: Path, layout: str = "processed") -> np.ndarray:
    return read_dataset(path, ACTION_PATHS[layout]).astype(np.float32)


def source_proprio(path: Path, layout: str = "aloha") -> np.ndarray:
    return read_dataset(path, PROPRIO_PATHS[layout]).astype(np.float32)


def train_paths(episodes_dir: Path, shards_dir: Path) -> list[Path]:
    """Source files of the set's train episodes, in the manifest's (sorted path) order."""
    manifest = read_manifest(shards_dir)
    return [episodes_dir / e.path for e in manifest.episodes if e.split == "train"]


def read_stats_json(shards_dir: Path) -> dict:
    return json.loads((shards_dir / STATS_FILE).read_text())


def file_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under folder, by relative path."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def leftovers(shards_dir: Path) -> list[str]:
    """Hidden staging or swap folders a conversion left beside its target."""
    return sorted(p.name for p in shards_dir.parent.glob(f".{shards_dir.name}.*"))
