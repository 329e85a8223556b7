"""The GPU check's vla-train part: its generated shard set, and the figures of its metrics."""

from __future__ import annotations

import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

from pipeline.config import ConvertConfig
from pipeline.convert.stages import convert
from pipeline.generate.synthetic import GenerateConfig, generate
from shards.manifest import read_manifest

TIMING_FILE = "timing.json"


def stream_set(
    root: Path, episodes: int, steps: int, shard_samples: int, cameras: tuple[str, ...]
) -> Path:
    """`vla-data generate` episodes (256 px), converted as `vla-data convert` does, one held out.

    root/timing.json records how long each stage took.
    """
    start = time.perf_counter()
    generate(GenerateConfig(root / "episodes", episodes=episodes, steps=steps, cameras=cameras))
    generated = time.perf_counter()
    shards = root / "shards"
    convert(
        ConvertConfig(
            root / "episodes", shards_dir=shards, val_episodes=1, shard_samples=shard_samples,
            progress=False,
        )
    )  # fmt: skip
    timing = {"generate_s": generated - start, "convert_s": time.perf_counter() - generated}
    (root / TIMING_FILE).write_text(json.dumps(timing))
    return shards


def set_info(shards: Path) -> dict[str, Any]:
    """Train samples and shards, bytes on disk, and the time stream_set took."""
    manifest = read_manifest(shards)
    return {
        "train_samples": manifest.samples("train"),
        "train_shards": len(manifest.shards("train")),
        "bytes": sum(f.stat().st_size for f in shards.iterdir() if f.is_file()),
        **json.loads((shards.parent / TIMING_FILE).read_text()),
    }


def loop_figures(
    records: list[dict[str, Any]], batch: int, skip: int, goal: float
) -> dict[str, Any]:
    """Step time and data wait from vla-train's metrics.jsonl, the first `skip` steps left out.

    The data-wait share is total wait over total step time: each step's share weighted by
    its length, so a few slow steps count as much as the time they took. `goal` is the
    share to stay under.
    """
    kept = records[skip:]
    step_s = [batch / r["samples_per_s"] for r in kept]
    waits = [r["data_wait"] for r in kept]
    median = statistics.median(step_s) if step_s else math.nan
    share = sum(w * t for w, t in zip(waits, step_s, strict=True)) / sum(step_s) if kept else None
    return {
        "steps": len(records),
        "skipped_steps": len(records) - len(kept),
        "first_step_s": batch / records[0]["samples_per_s"] if records else None,
        "skipped_data_wait": [r["data_wait"] for r in records[:skip]],
        "data_wait_share": share,
        "data_wait_max": max(waits, default=None),
        "data_wait_goal_met": share is not None and share < goal,
        "median_step_s": median,
        "samples_per_s": batch / median,
        "loss": [r["loss"] for r in records],
        "losses_finite": all(math.isfinite(r["loss"]) for r in records),
        "bad_shards": records[-1]["bad_shards"] if records else None,
        "bad_samples": records[-1]["bad_samples"] if records else None,
    }
