"""`vla-data loadtest`: drive the trainer's CPU-side loader alone and measure samples/s and MB/s.

It runs exactly what `vla-train` runs up to the point where a batch is ready to go to the
device (shard reading, JPEG decoding and collation in DataLoader workers, pinned memory
when CUDA is there), and nothing after it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from pipeline.config import ConfigError
from shards.reader import StreamConfig, make_loader
from shards.source import open_shard_set


@dataclass
class LoadtestConfig:
    source: str  # shard set folder or URL prefix
    workers: int = 2
    batch_size: int = 8
    cameras: tuple[str, ...] = ("head", "left_wrist")
    samples: int = 4000  # samples to time, after the warm-up
    warmup_batches: int = 5  # worker start-up and first shard opens stay out of the figure
    shuffle_buffer: int = 1000
    split: str = "train"
    decode_threads: int = 0  # threads decoding JPEGs in each loading process; 0: inline

    def __post_init__(self) -> None:
        for option, value, least in (
            ("--batch-size", self.batch_size, 1),
            ("--workers", self.workers, 0),
            ("--decode-threads", self.decode_threads, 0),
            ("--shuffle-buffer", self.shuffle_buffer, 0),
        ):
            if value < least:
                raise ConfigError(f"{option} must be at least {least}, got {value}")
        if self.samples < self.batch_size:
            raise ConfigError("--samples must be at least one batch")


@dataclass
class LoadtestResult:
    samples: int
    seconds: float
    bytes_read: int  # shard bytes behind the timed samples (average sample size x samples)

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.seconds

    @property
    def mb_per_s(self) -> float:
        return self.bytes_read / self.seconds / 1e6


def loadtest(config: LoadtestConfig) -> LoadtestResult:
    shard_set = open_shard_set(config.source)
    stream = StreamConfig(
        split=config.split,
        cameras=config.cameras,
        batch_size=config.batch_size,
        shuffle_buffer=config.shuffle_buffer,
        workers=config.workers,
        decode_threads=config.decode_threads,
        pin_memory=torch.cuda.is_available(),
    )
    shards = shard_set.manifest.shards(config.split)
    bytes_per_sample = sum(s.bytes for s in shards) / max(1, sum(s.samples for s in shards))
    batches = iter(make_loader(shard_set, stream))
    for _ in range(config.warmup_batches):
        next(batches)
    seen = 0
    start = time.perf_counter()
    while seen < config.samples:
        seen += len(next(batches)["keys"])
    elapsed = time.perf_counter() - start
    return LoadtestResult(seen, elapsed, int(bytes_per_sample * seen))
