"""`vla-train loadtest`: drive the trainer's CPU-side loader alone and measure samples/s and MB/s.

It runs exactly what `vla-train` runs up to the point where a batch is ready to go to the
device (shard reading, JPEG decoding and collation, in worker processes or decode threads as
`auto` chooses them for vla-train too; pinned memory when CUDA is there; the instructions'
token ids, through the same per-instruction cache), and nothing after it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from shards.loader_plan import AUTO, LoaderPlan, parse_count, plan_loader
from shards.mixture import Mixture
from shards.reader import StreamConfig, make_loader
from trainer.model.prompt import PromptTokens, sequence_ids
from trainer.model.tokenizer import tiny_tokenizer
from trainer.run.builder import open_data
from trainer.run.distributed import Dist
from trainer.run.streams import run_stream
from trainer.run.train_config import ConfigError, TrainConfig


@dataclass
class LoadtestConfig:
    source: str  # shard set folder or URL prefix
    workers: int | str = AUTO  # DataLoader worker processes; "auto": shards.loader_plan
    batch_size: int = 8
    cameras: tuple[str, ...] = ("head", "left_wrist")
    samples: int = 4000  # samples to time, after the warm-up
    warmup_batches: int = 5  # worker start-up and first shard opens stay out of the figure
    shuffle_buffer: int = 1000
    split: str = "train"
    decode_threads: int | str = AUTO  # threads decoding JPEGs per loading process; 0: inline
    pin_memory: bool = torch.cuda.is_available()  # as vla-train: pinned when there is CUDA

    def __post_init__(self) -> None:
        try:
            self.workers = parse_count(self.workers, "--workers")
            self.decode_threads = parse_count(self.decode_threads, "--decode-threads")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        for option, value, least in (
            ("--batch-size", self.batch_size, 1),
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
    plan: LoaderPlan

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.seconds

    @property
    def mb_per_s(self) -> float:
        return self.bytes_read / self.seconds / 1e6


def loadtest(config: LoadtestConfig) -> LoadtestResult:
    plan = plan_loader(config.workers, config.decode_threads)
    mixture, stream = trainer_stream(config, plan)
    manifest = mixture.sets[0].manifest
    tokenize = _prompt_tokens(manifest.chunk * manifest.action_dim)
    shards = manifest.shards(config.split)
    bytes_per_sample = sum(s.bytes for s in shards) / max(1, sum(s.samples for s in shards))
    batches = iter(make_loader(mixture, stream))
    for _ in range(config.warmup_batches):
        next(batches)
    seen = 0
    start = time.perf_counter()
    while seen < config.samples:
        batch = next(batches)
        tokenize(batch["instructions"])
        seen += len(batch["keys"])
    elapsed = time.perf_counter() - start
    return LoadtestResult(seen, elapsed, int(bytes_per_sample * seen), plan)


def trainer_stream(config: LoadtestConfig, plan: LoaderPlan) -> tuple[Mixture, StreamConfig]:
    """The set, opened as `vla-train --shards SOURCE` with these options opens it, and the
    stream it would read, by the run builder's own rules (its defaults: episode tails, robot
    state when the set carries it)."""
    run = TrainConfig(
        shards=(config.source,), cameras=config.cameras, batch_size=config.batch_size,
        shuffle_buffer=config.shuffle_buffer, workers=plan.workers,
        decode_threads=plan.decode_threads,
    )  # fmt: skip
    # One process, on the device vla-train would pick: CUDA (batches pinned) when present.
    dist = Dist(rank=0, world_size=1, device=torch.device("cuda" if config.pin_memory else "cpu"))
    run, mixture = open_data(run, dist)
    return mixture, run_stream(run, config.split, dist)


def _prompt_tokens(num_slots: int) -> Callable[[list[str]], dict[str, torch.Tensor]]:
    """The trainer's prompt tokenization (with its cache); the tiny base's tokenizer stands in
    for the base's, since a run tokenizes each distinct instruction only once either way."""
    tokenizer = tiny_tokenizer()
    return PromptTokens(tokenizer, num_slots, sequence_ids(tokenizer, tokenizer.pad_token_id))
