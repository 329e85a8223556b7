"""Where the shard loader's time goes, stage by stage, in one process and then with workers.

    .venv/bin/python -m bench.loader_stages [--episodes 20 --steps 100 --rounds 3]

Each line adds one stage to the one before, over the same two-camera shard set:
  read      the shard files' bytes (page cache warm)
  tar       + tar parsing into samples (shards.samples.iter_raw_samples)
  decode    + JPEG decoding of both images (simplejpeg, accurate DCT)
  stream    the trainer's stream in-process: + shuffle buffer, checks, batch collation
  loader    the trainer's DataLoader with N workers: + worker processes and the
            inter-process copy of each batch (shared memory)
Then, side by side, the loader as the trainer builds it by default (`auto` decides its
workers and decode threads for this machine), timed after 5 batches of warm-up, and the
decode bound: the same frames' JPEG
bytes, already in memory, decoded by N threads with nothing else to do (bench.decode_threads).
It prints the median samples/s and microseconds per sample of each line, the difference of
each stage to the line before, which is that stage's own cost, and the default loader's
share of the decode bound: of the two medians, and round by round (the bound is timed right
after the loader in each round). Rounds alternate all lines. When the default loader runs in this
process (few cores), how its threads spent the last round follows: time on a core, waiting
for one, and idle (bench.thread_times), per sample.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from bench.decode_threads import decode_bound, frames_of
from bench.peers_read import measure
from bench.scratch import scratch_dir
from bench.thread_times import thread_lines, thread_times
from pipeline.config import ConvertConfig
from pipeline.convert.stages import convert
from pipeline.generate.synthetic import GenerateConfig, generate
from shards.format import decode_jpeg
from shards.loader_plan import LoaderPlan, plan_loader
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


def steady_rate(shard_set: ShardSet, plan: LoaderPlan, samples: int) -> tuple[float, list[str]]:
    """Samples/s of the loader `plan` builds, timed as bench.peers_read times every library:
    after 5 batches of warm-up (start-up and the shuffle buffer's first fill left out); and
    how this process's threads spent the timed part (bench.thread_times)."""
    config = StreamConfig(cameras=CAMERAS, batch_size=8, workers=plan.workers,
                          decode_threads=plan.decode_threads)  # fmt: skip
    loader = make_loader(shard_set, config)
    marks = []

    def mark() -> None:  # read inside measure: the loader's decode threads end with it
        marks.append((time.perf_counter(), thread_times()))

    rate = measure(loader, samples, time.perf_counter(), mark)["samples_per_s"]
    (begin, before), (end, after) = marks
    # measure stops on the batch that passes `samples`: it counts as here, in batches of 8.
    return rate, thread_lines(before, after, end - begin, 8 * -(-samples // 8))


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
    plan = plan_loader()
    frames = frames_of(shard_set, CAMERAS)
    threads: list[str] = []

    def default_rate() -> float:
        rate, threads[:] = steady_rate(shard_set, plan, total)  # the last round's are shown
        return rate

    stages = {
        "read": lambda: timed(lambda: stage_read(shard_set)),
        "tar": lambda: timed(lambda: stage_tar(shard_set)),
        "decode": lambda: timed(lambda: stage_tar(shard_set, decode=True)),
        "stream": lambda: timed(lambda: stage_loader(shard_set, 0, total)),
        f"loader({args.workers}w)": lambda: timed(
            lambda: stage_loader(shard_set, args.workers, total)
        ),
        "default": default_rate,
        f"bound({args.workers}t)": lambda: decode_bound(frames, 224, args.workers, total),
    }
    rates: dict[str, list[float]] = {name: [] for name in stages}
    for _ in range(args.rounds):
        for name, fn in stages.items():
            rates[name].append(fn())

    print(f"{total} samples, {len(CAMERAS)} cameras at 224, batch 8, {args.rounds} rounds")
    previous = None
    for name, values in rates.items():
        rate = statistics.median(values)
        us = 1e6 / rate
        delta = "" if previous is None else f"  (+{us - previous:7.1f} us)"
        if name.startswith("loader"):
            delta = f"  (wall per sample with {args.workers} workers in parallel)"
        elif name == "default":
            delta = f"  ({plan.line()})"
        elif name.startswith("bound"):
            delta = f"  (bare decode of the same frames in memory, {args.workers} threads)"
        rounds = ", ".join(f"{v:.0f}" for v in values)
        print(f"{name:<12}{rate:10.0f} samples/s {us:9.1f} us/sample{delta}  [{rounds}]")
        previous = us
    default, bound = (statistics.median(rates[n]) for n in ("default", f"bound({args.workers}t)"))
    if threads and plan.workers == 0:
        print("the default loader's threads in its last round:")
        print("\n".join(threads))
    # The machine's speed drifts from round to round; within a round the loader and the
    # bound are timed seconds apart, so each round's share is shown beside the medians'.
    bounds = rates[f"bound({args.workers}t)"]
    shares = [d / b for d, b in zip(rates["default"], bounds, strict=True)]
    rounds = ", ".join(f"{100 * share:.0f}%" for share in shares)
    print(
        f"default loader: {100 * default / bound:.0f}% of the decode bound (medians); "
        f"per round {rounds}, median {100 * statistics.median(shares):.0f}%"
    )


if __name__ == "__main__":
    main()
