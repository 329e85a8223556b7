"""Prototype, not the shipped loader: decode a batch's JPEGs with a thread pool in one process.

    .venv/bin/python -m bench.decode_threads SHARDS [--samples 4000]

simplejpeg releases the GIL while decoding, so threads decode in parallel with no worker
processes and no per-batch shared-memory segment. Reads the train split in shard order
(no shuffle buffer), decodes head and left_wrist into one batch tensor of 8, plus the
actions and meta; alternates 1 and 2 threads and prints samples/s for each.

Also the decode bound other benches set loaders against (decode_bound): the same frames'
JPEG bytes, already in memory, decoded by threads with nothing else to do.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import simplejpeg
import torch

from shards.format import decode_actions, decode_jpeg, decode_meta
from shards.samples import RawSample, iter_raw_samples
from shards.source import ShardSet, open_shard_set

CAMERAS = ("head.jpg", "left_wrist.jpg")


def raws(shard_set: ShardSet) -> Iterator[RawSample]:
    while True:
        for name in shard_set.shard_names("train"):
            with shard_set.open_shard(name) as f:
                yield from iter_raw_samples(f, name)


def frames_of(shard_set: ShardSet, cameras: Sequence[str]) -> list[tuple[bytes, ...]]:
    """The JPEG bytes of every train sample of the set, these cameras, in memory."""
    names = [f"{camera}.jpg" for camera in cameras]
    frames = []
    for name in shard_set.shard_names("train"):
        with shard_set.open_shard(name) as f:
            frames += [tuple(raw[n] for n in names) for raw in iter_raw_samples(f, name)]
    return frames


def decode_bound(frames: list[tuple[bytes, ...]], side: int, threads: int, samples: int) -> float:
    """Samples/s of bare JPEG decoding of `samples` samples (the set's, over again as needed),
    batches of 8 spread over `threads` threads (simplejpeg releases the GIL), each into a
    buffer of its own: no reading, parsing or collation."""
    frames = [frames[i % len(frames)] for i in range(max(samples, len(frames)))]
    batches = [frames[i : i + 8] for i in range(0, len(frames), 8)]
    local = threading.local()

    def decode(batch: list[tuple[bytes, ...]]) -> None:
        if not hasattr(local, "out"):
            local.out = np.empty((8, len(batch[0]), side, side, 3), np.uint8)
        for j, sample in enumerate(batch):
            for k, data in enumerate(sample):
                decode_jpeg(data, local.out[j, k])

    with ThreadPoolExecutor(threads) as pool:
        start = time.perf_counter()
        list(pool.map(decode, batches))
        return len(frames) / (time.perf_counter() - start)


def run(shard_set: ShardSet, threads: int, samples: int) -> float:
    pool = ThreadPoolExecutor(threads)
    stream = raws(shard_set)
    n, start = 0, time.perf_counter()
    while n < samples:
        batch = [next(stream) for _ in range(8)]
        images = torch.empty((8, len(CAMERAS), 224, 224, 3), dtype=torch.uint8)
        out = images.numpy()

        def decode(j: int, batch: list[RawSample] = batch, out: np.ndarray = out) -> None:
            for k, camera in enumerate(CAMERAS):
                simplejpeg.decode_jpeg(batch[j][camera], buffer=out[j, k])

        list(pool.map(decode, range(8)))
        np.stack([decode_actions(r["actions.npy"]) for r in batch])
        [decode_meta(r["meta.json"]) for r in batch]
        n += 8
    pool.shutdown()
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("shards")
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    shard_set = open_shard_set(args.shards)
    rates: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(args.rounds):
        for threads in rates:
            rates[threads].append(run(shard_set, threads, args.samples))
    for threads, values in rates.items():
        print(f"{threads} decode thread(s): {statistics.median(values):8.1f} samples/s")


if __name__ == "__main__":
    main()
