"""Where the shard loader's time goes, stage by stage, in one process and then with workers.

    .venv/bin/python -m bench.loader_stages [--episodes 20 --steps 100 --rounds 3]

Each line adds one stage to the one before, over the same two-camera shard set:
  read      the shard files' bytes (page cache warm)
  tar       + tar parsing into samples (shards.samples.iter_raw_samples)
  decode    + JPEG decoding of both images (simplejpeg, accurate DCT)
  stream    the trainer's stream in-process: + shuffle buffer, checks, batch collation
  loader    the trainer's DataLoader with N workers: + worker processes and the
            inter-process copy of each batch (shared memory)
It prints the median samples/s and microseconds per sample of each line, and the
difference to the line before, which is that stage's own cost.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from bench.scratch import scratch_dir
from pipeline.config import ConvertConfig
from pipeline.convert.stages import convert
from pipeline.generate.synthetic import GenerateConfig, generate
from shards.format import decode_jpeg
from shards.reader import StreamConfig, make_loader
from shards.samples import iter_raw_samples
from shards.source import ShardSet, open_shard_set

CAMERAS = ("head", "left_wrist")


def stage_read(shard_set: ShardSet) -> int:
    n = 0
    for name in shard_set.shard_names("train"):
        with shard_set.open_shard(name) as f:
            while f.read(1 << 20):
                pass
    for s in shard_set.manifest.shards("train"):
        n += s.samples
    return n


def stage_tar(shard_set: ShardSet, decode: bool = False) -> int:
    n = 0
    for name in shard_set.shard_names("train"):
        with shard_set.open_shard(name) as f:
            for raw in iter_raw_samples(f, name):
                if decode:
                    for camera in CAMERAS:
                        decode_jpeg(raw[f"{camera}.jpg"])
                n += 1
    return n


def stage_loader(shard_set: ShardSet, workers: int, samples: int) -> int:
    config = StreamConfig(cameras=CAMERAS, batch_size=8, workers=workers)
    batches = iter(make_loader(shard_set, config))
    n = 0
    while n < samples:
        n += len(next(batches)["keys"])
    return n


def timed(fn: Callable[[], int]) -> float:
    start = time.perf_counter()
    n = fn()
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    root = scratch_dir()
    generate(GenerateConfig(root / "eps", episodes=args.episodes, steps=args.steps))
    convert(ConvertConfig(root / "eps", shards_dir=root / "shards", val_episodes=0,
                          cameras=CAMERAS, shard_samples=250, progress=False))  # fmt: skip
    shard_set = open_shard_set(root / "shards")
    total = shard_set.manifest.samples("train")
    stages = {
        "read": lambda: stage_read(shard_set),
        "tar": lambda: stage_tar(shard_set),
        "decode": lambda: stage_tar(shard_set, decode=True),
        "stream": lambda: stage_loader(shard_set, 0, total),
        f"loader({args.workers}w)": lambda: stage_loader(shard_set, args.workers, total),
    }
    rates: dict[str, list[float]] = {name: [] for name in stages}
    for _ in range(args.rounds):
        for name, fn in stages.items():
            rates[name].append(timed(fn))

    print(f"{total} samples, {len(CAMERAS)} cameras at 224, batch 8, {args.rounds} rounds")
    previous = None
    for name, values in rates.items():
        rate = statistics.median(values)
        us = 1e6 / rate
        delta = "" if previous is None else f"  (+{us - previous:7.1f} us)"
        if name.startswith("loader"):
            delta = f"  (wall per sample with {args.workers} workers in parallel)"
        print(f"{name:<12}{rate:10.0f} samples/s {us:9.1f} us/sample{delta}")
        previous = us


if __name__ == "__main__":
    main()
