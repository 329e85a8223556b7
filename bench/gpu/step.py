"""Time training steps on one CUDA GPU: median step time, samples/s, peak memory and data wait.

    python -m bench.gpu.step [--shards SHARDS] [--batch-size 8] [--steps 20]

The functions here are also what the GPU check (bench.gpu.check) runs: `step_setup` builds the
run through vla-train's own builder (model, optimizer, schedule, device-side data path),
`time_steps` runs and times its steps.
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
from shards.manifest import Manifest
from shards.mixture import Mixture
from shards.source import ShardSet
from stats.compute import ArrayStats, DatasetStats, array_stats
from trainer.data.batches import Prefetcher
from trainer.run.builder import Run, build_run, open_data, with_robot
from trainer.run.distributed import Dist
from trainer.run.step import l1_metrics, train_step
from trainer.run.train_config import TrainConfig

CHUNK, ACTION_DIM = 8, 14  # the synthetic batch's chunk: RoboTwin's 8 x 14
SYNTHETIC = "synthetic"  # the --shards of a run fed one synthetic batch


@dataclass
class StepSetup:
    """Everything one timed run needs: the run as vla-train builds it, and its batches."""

    run: Run
    batches: Prefetcher
    build_s: float  # run build (base, LoRA, head, optimizer), the 7B's random init included

    @property
    def device(self) -> torch.device:
        return self.run.dist.device


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
    """vla-train's run (its defaults but these options) over real shards or one synthetic batch."""
    plan = plan_loader(workers)  # vla-train's rule for "auto"
    cfg = TrainConfig(
        shards=(shards or SYNTHETIC,), base=base, batch_size=batch_size, cameras=cameras,
        grad_checkpointing=grad_checkpointing, workers=plan.workers,
        decode_threads=plan.decode_threads, proprio=None if shards else False,
    )  # fmt: skip
    dist = Dist(rank=0, world_size=1, device=device)
    loader = None
    if shards:
        cfg, mixture = open_data(cfg, dist)
    else:
        mixture = synthetic_mixture(cameras)
        cfg = with_robot(cfg, mixture)  # the normalization vla-train would decide for it
        loader = synthetic_batches(
            batch_size, len(cameras), CHUNK, ACTION_DIM, device.type == "cuda"
        )
    start = time.perf_counter()
    run = build_run(cfg, dist, mixture, compile_model=compile_model, fused_adamw=fused_adamw)
    _synchronize(device)
    build_s = time.perf_counter() - start
    return StepSetup(run, run.train_batches(loader), build_s)


def run_step(setup: StepSetup) -> torch.Tensor:
    """One optimizer step of the trainer's own train_step; returns its l1_sums."""
    run = setup.run
    return train_step(run.trained, setup.batches, 1, run.optimizer, run.scheduler, setup.device)


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
                times.grad_norm.append(gradient_norm(setup.run.model))
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


def synthetic_mixture(cameras: tuple[str, ...]) -> Mixture:
    """What the run builder reads of a shard set (shapes, cameras, statistics), with no files."""
    manifest = Manifest(
        dataset=SYNTHETIC, tool_version="", layout=SYNTHETIC, cameras=list(cameras), chunk=CHUNK,
        action_dim=ACTION_DIM, proprio_dim=None, image_size=224, options={},
    )  # fmt: skip
    stats = DatasetStats(synthetic_stats(ACTION_DIM), None, 1000, 1)
    return Mixture((ShardSet(SYNTHETIC, manifest, stats, ""),), (1.0,))


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
        raise click.ClickException("bench.gpu.step needs a CUDA GPU and none is visible")
    device = torch.device("cuda")
    cameras = camera_list(camera_names)
    setup = step_setup(
        base, batch_size, cameras, device, grad_checkpointing, shards,
        parse_count(workers, "--workers"),
        compile_model, fused_adamw,
    )  # fmt: skip
    result = time_steps(setup, warmup, steps).summary(batch_size)
    counts = setup.run.model.trainable_parameters()
    print(f"{torch.cuda.get_device_name(device)}, base {base}, batch {batch_size}, {counts}")
    print(
        f"median step {result['median_step_s']:.3f} s, {result['samples_per_s']:.1f} samples/s, "
        f"peak memory {result['peak_allocated_gib']:.1f} GiB, "
        f"data wait {result['data_wait_share']:.1%}"
    )


if __name__ == "__main__":
    main()
