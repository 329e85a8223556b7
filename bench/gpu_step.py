"""Time training steps on one CUDA GPU: median step time, samples/s, peak memory and data wait."""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Iterator
from typing import Any

import click
import numpy as np
import torch

from shards.reader import StreamConfig, make_loader
from shards.source import open_shard_set
from stats.compute import ArrayStats, array_stats
from trainer.batches import BatchPrep, Prefetcher
from trainer.model import ModelConfig, build_policy
from trainer.step import build_optimizer, build_scheduler, train_step


@click.command()
@click.option("--shards", help="Shard set to read; without it, synthetic uint8 batches.")
@click.option("--base", default="openvla-7b-random", show_default=True)
@click.option("--steps", default=20, show_default=True, help="Timed steps.")
@click.option("--warmup", default=3, show_default=True, help="Untimed steps first.")
@click.option("--batch-size", default=8, show_default=True)
@click.option("--images", default="head,left_wrist", show_default=True)
@click.option("--workers", default=8, show_default=True, help="DataLoader workers (--shards).")
@click.option("--grad-checkpointing", is_flag=True)
@click.option("--compile", "compile_model", is_flag=True, help="torch.compile the policy.")
@click.option("--fused-adamw", is_flag=True)
def main(
    shards: str | None,
    base: str,
    steps: int,
    warmup: int,
    batch_size: int,
    images: str,
    workers: int,
    grad_checkpointing: bool,
    compile_model: bool,
    fused_adamw: bool,
) -> None:
    """Run --warmup + --steps optimizer steps through the trainer's own step and data path."""
    if not torch.cuda.is_available():
        raise click.ClickException("bench/gpu_step.py needs a CUDA GPU and none is visible")
    device = torch.device("cuda")
    cameras = tuple(c for c in images.split(",") if c)
    torch.manual_seed(0)
    if shards:
        shard_set = open_shard_set(shards)
        chunk, action_dim = shard_set.manifest.chunk, shard_set.manifest.action_dim
        action_stats = shard_set.stats.action
        cfg = StreamConfig(cameras=cameras, batch_size=batch_size, workers=workers, pin_memory=True)
        loader = make_loader(shard_set, cfg)
    else:
        chunk, action_dim = 8, 14
        action_stats = _synthetic_stats(action_dim)
        loader = _synthetic_batches(batch_size, len(cameras), chunk, action_dim)

    policy = build_policy(
        ModelConfig(
            base=base,
            action_dim=action_dim,
            chunk=chunk,
            num_images=len(cameras),
            grad_checkpointing=grad_checkpointing,
            dtype="bfloat16",
        ),
        device,
    )
    model = torch.compile(policy) if compile_model else policy
    optimizer = build_optimizer(policy, lr=5e-4, fused=fused_adamw)
    scheduler = build_scheduler(optimizer, warmup_steps=0, decay_step=10**9)
    prep = BatchPrep([action_stats], "bounds_q99", device, True, torch.Generator().manual_seed(0))
    batches = Prefetcher(loader, policy.tokenize, prep, device)

    times, waits = [], []
    for i in range(warmup + steps):
        if i == warmup:
            torch.cuda.reset_peak_memory_stats(device)
        start, waited = time.perf_counter(), batches.wait_s
        sums = train_step(model, batches, 1, optimizer, scheduler, device)
        sums.sum().item()  # wait for the GPU: the step is over only when its kernels are
        elapsed = time.perf_counter() - start
        if i >= warmup:
            times.append(elapsed)
            waits.append((batches.wait_s - waited) / elapsed)
    median = statistics.median(times)
    peak = torch.cuda.max_memory_allocated(device) / 2**30
    counts = policy.trainable_parameters()
    print(f"{torch.cuda.get_device_name(device)}, base {base}, batch {batch_size}, {counts}")
    print(
        f"median step {median:.3f} s, {batch_size / median:.1f} samples/s, "
        f"peak memory {peak:.1f} GiB, data wait {statistics.mean(waits):.1%}"
    )


def _synthetic_stats(action_dim: int) -> ArrayStats:
    return array_stats(np.random.default_rng(0).uniform(-1, 1, (1000, action_dim)))


def _synthetic_batches(
    batch: int, num_images: int, chunk: int, action_dim: int
) -> Iterator[dict[str, Any]]:
    """One pinned random batch over and over: the device-side path without any disk reads."""
    images = torch.randint(0, 256, (batch, num_images, 224, 224, 3), dtype=torch.uint8)
    sample = {
        "images": images.pin_memory(),
        "actions": torch.rand(batch, chunk, action_dim).pin_memory(),
        "valid": torch.full((batch,), chunk, dtype=torch.int64),
        "sets": torch.zeros(batch, dtype=torch.int64).pin_memory(),
        "instructions": ["put the shoe on the mat"] * batch,
        "keys": [f"synthetic_{i:06d}" for i in range(batch)],
    }
    return itertools.repeat(sample)


if __name__ == "__main__":
    main()
