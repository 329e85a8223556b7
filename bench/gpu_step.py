"""Time training steps on one CUDA GPU: median step time, samples/s, peak memory and data wait.

The functions here are also what bench/gpu_check.py runs: `step_setup` builds the policy,
optimizer and the trainer's device-side data path, `time_steps` runs and times its steps.
"""

from __future__ import annotations

import itertools
import math
import resource
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import click
import numpy as np
import torch
from torch import nn

from shards.commandline import camera_list
from shards.loader_plan import AUTO, parse_count, plan_loader
from shards.reader import StreamConfig, make_loader
from shards.source import open_shard_set
from stats.compute import ArrayStats, array_stats
from trainer.data.batches import BatchPrep, Prefetcher
from trainer.model import ActionModel, ModelConfig, build_model
from trainer.model.model_config import base_dtype
from trainer.run.step import build_optimizer, build_scheduler, l1_metrics, train_step

CHUNK, ACTION_DIM = 8, 14  # the synthetic batch's chunk: RoboTwin's 8 x 14


@dataclass
class StepSetup:
    """Everything one timed run needs, built the way vla-train builds it."""

    policy: ActionModel
    model: nn.Module  # the policy, or its torch.compile wrapper
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    batches: Prefetcher
    device: torch.device
    batch_size: int
    build_s: float  # policy build (base, LoRA, head), the 7B's random init included


@dataclass
class StepTimes:
    """Per-step figures of the timed steps (warm-up steps excluded)."""

    step_s: list[float] = field(default_factory=list)
    data_wait: list[float] = field(default_factory=list)  # share of each step spent waiting
    loss: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)  # only when asked for
    warmup_s: list[float] = field(default_factory=list)
    peak_allocated_gib: float = 0.0
    peak_reserved_gib: float = 0.0

    def summary(self, batch_size: int) -> dict[str, Any]:
        median = statistics.median(self.step_s) if self.step_s else math.nan
        return {
            "steps": len(self.step_s),
            "median_step_s": median,
            "samples_per_s": batch_size / median if self.step_s else math.nan,
            "min_step_s": min(self.step_s, default=math.nan),
            "max_step_s": max(self.step_s, default=math.nan),
            "data_wait_share": _weighted_share(self.data_wait, self.step_s),
            "peak_allocated_gib": self.peak_allocated_gib,
            "peak_reserved_gib": self.peak_reserved_gib,
            "warmup_s": self.warmup_s,
            "step_s": self.step_s,
            "loss": self.loss,
            "losses_finite": all(math.isfinite(v) for v in self.loss),
        }


def step_setup(
    base: str,
    batch_size: int,
    cameras: tuple[str, ...],
    device: torch.device,
    grad_checkpointing: bool = False,
    shards: str | None = None,
    workers: int | str = AUTO,
    compile_model: bool = False,
    fused_adamw: bool = False,
) -> StepSetup:
    """Policy, AdamW, schedule and the Prefetcher over real shards or one synthetic batch."""
    torch.manual_seed(0)
    pin = device.type == "cuda"
    if shards:
        shard_set = open_shard_set(shards)
        chunk, action_dim = shard_set.manifest.chunk, shard_set.manifest.action_dim
        action_stats = shard_set.stats.action
        plan = plan_loader(workers)  # vla-train's rule for "auto"
        cfg = StreamConfig(
            cameras=cameras, batch_size=batch_size, workers=plan.workers,
            decode_threads=plan.decode_threads, pin_memory=pin,
        )  # fmt: skip
        loader = make_loader(shard_set, cfg)
    else:
        chunk, action_dim = CHUNK, ACTION_DIM
        action_stats = synthetic_stats(action_dim)
        loader = synthetic_batches(batch_size, len(cameras), chunk, action_dim, pin)
    start = time.perf_counter()
    policy = build_model(
        ModelConfig(
            base=base,
            action_dim=action_dim,
            chunk=chunk,
            num_images=len(cameras),
            grad_checkpointing=grad_checkpointing,
            dtype=base_dtype(device),
        ),
        device,
    )
    _synchronize(device)
    build_s = time.perf_counter() - start
    model = torch.compile(policy) if compile_model else policy
    optimizer = build_optimizer(policy, lr=5e-4, fused=fused_adamw)
    scheduler = build_scheduler(optimizer, warmup_steps=0, decay_step=10**9)
    prep = BatchPrep([action_stats], "bounds_q99", device, True, torch.Generator().manual_seed(0))
    batches = Prefetcher(loader, policy.tokenize, prep, device)
    return StepSetup(policy, model, optimizer, scheduler, batches, device, batch_size, build_s)


def run_step(setup: StepSetup) -> torch.Tensor:
    """One optimizer step of the trainer's own train_step; returns its l1_sums."""
    return train_step(setup.model, setup.batches, 1, setup.optimizer, setup.scheduler, setup.device)


def time_steps(
    setup: StepSetup,
    warmup: int,
    steps: int,
    deadline: float = math.inf,
    grad_norm: bool = False,
    on_step: Callable[[StepTimes], None] | None = None,
) -> StepTimes:
    """`warmup` untimed steps, then up to `steps` timed ones, stopping at `deadline`.

    `deadline` is a time.monotonic() value; `on_step` sees the figures after every step,
    so a caller can save them as they come.
    """
    times = StepTimes()
    for i in range(warmup + steps):
        if time.monotonic() > deadline:
            break
        if i == warmup:
            _reset_peak(setup.device)
        start, waited = time.perf_counter(), setup.batches.wait_s
        sums = run_step(setup)
        loss = l1_metrics(sums)["loss"]  # .tolist(): the step is over only when its kernels are
        elapsed = time.perf_counter() - start
        if i < warmup:
            times.warmup_s.append(elapsed)
        else:
            times.step_s.append(elapsed)
            times.data_wait.append((setup.batches.wait_s - waited) / elapsed)
            times.loss.append(loss)
            if grad_norm:
                times.grad_norm.append(gradient_norm(setup.policy))
            times.peak_allocated_gib, times.peak_reserved_gib = peak_memory_gib(setup.device)
        if on_step is not None:
            on_step(times)
    return times


def gradient_norm(model: nn.Module) -> float:
    """L2 norm over all trainable gradients of the last step (AdamW leaves them in place)."""
    norms = [p.grad.detach().float().norm() for p in model.parameters() if p.grad is not None]
    return float(torch.stack(norms).norm()) if norms else math.nan


def peak_memory_gib(device: torch.device) -> tuple[float, float]:
    """(allocated, reserved) peak since the last reset on CUDA; the process's peak RSS on CPU."""
    if device.type == "cuda":
        return (
            torch.cuda.max_memory_allocated(device) / 2**30,
            torch.cuda.max_memory_reserved(device) / 2**30,
        )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    return rss, rss


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _weighted_share(shares: list[float], seconds: list[float]) -> float:
    """Total wait over total time: each step's share weighted by its length."""
    total = sum(seconds)
    return sum(s * t for s, t in zip(shares, seconds, strict=True)) / total if total else math.nan


def synthetic_stats(action_dim: int) -> ArrayStats:
    return array_stats(np.random.default_rng(0).uniform(-1, 1, (1000, action_dim)))


def synthetic_batches(
    batch: int, num_images: int, chunk: int, action_dim: int, pin: bool
) -> Iterator[dict[str, Any]]:
    """One random batch over and over (pinned on CUDA): the device-side path without disk reads."""
    sample = {
        "images": torch.randint(0, 256, (batch, num_images, 224, 224, 3), dtype=torch.uint8),
        "actions": torch.rand(batch, chunk, action_dim),
        "valid": torch.full((batch,), chunk, dtype=torch.int64),
        "sets": torch.zeros(batch, dtype=torch.int64),
    }
    if pin:
        sample = {k: v.pin_memory() for k, v in sample.items()}
    sample["instructions"] = ["put the shoe on the mat"] * batch
    sample["keys"] = [f"synthetic_{i:06d}" for i in range(batch)]
    return itertools.repeat(sample)


@click.command()
@click.option("--shards", help="Shard set to read; without it, synthetic uint8 batches.")
@click.option("--base", default="openvla-7b-random", show_default=True)
@click.option("--steps", default=20, show_default=True, help="Timed steps.")
@click.option("--warmup", default=3, show_default=True, help="Untimed steps first.")
@click.option("--batch-size", default=8, show_default=True)
@click.option("--cameras", "camera_names", default="head,left_wrist", show_default=True)
@click.option(
    "--workers", default=AUTO, show_default=True,
    help="DataLoader workers (--shards); auto: as vla-train chooses.",
)  # fmt: skip
@click.option("--grad-checkpointing", is_flag=True)
@click.option("--compile", "compile_model", is_flag=True, help="torch.compile the policy.")
@click.option("--fused-adamw", is_flag=True)
def main(
    shards: str | None,
    base: str,
    steps: int,
    warmup: int,
    batch_size: int,
    camera_names: str,
    workers: str,
    grad_checkpointing: bool,
    compile_model: bool,
    fused_adamw: bool,
) -> None:
    """Run --warmup + --steps optimizer steps through the trainer's own step and data path."""
    if not torch.cuda.is_available():
        raise click.ClickException("bench/gpu_step.py needs a CUDA GPU and none is visible")
    device = torch.device("cuda")
    cameras = camera_list(camera_names)
    setup = step_setup(
        base, batch_size, cameras, device, grad_checkpointing, shards,
        parse_count(workers, "--workers"),
        compile_model, fused_adamw,
    )  # fmt: skip
    result = time_steps(setup, warmup, steps).summary(batch_size)
    counts = setup.policy.trainable_parameters()
    print(f"{torch.cuda.get_device_name(device)}, base {base}, batch {batch_size}, {counts}")
    print(
        f"median step {result['median_step_s']:.3f} s, {result['samples_per_s']:.1f} samples/s, "
        f"peak memory {result['peak_allocated_gib']:.1f} GiB, "
        f"data wait {result['data_wait_share']:.1%}"
    )


if __name__ == "__main__":
    main()
