"""The GPU check's parts: each measures one thing through the trainer's own code.

Every part records into a Recorder as it goes, so a part stopped at its time budget still
leaves what it had measured. Parts import what they need themselves: a package missing on
the machine then fails only the parts that use it, and `env` still says what is there.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable
from importlib import metadata
from typing import Any

import torch

from bench.gpu.decode_part import decode
from bench.gpu.part_context import ANCHORS, BASE_7B, CAMERAS, Context, Recorder
from bench.gpu.probes import nvidia_smi

PACKAGES = (
    "torch", "transformers", "peft", "timm", "safetensors", "tokenizers", "numpy", "h5py",
    "pillow", "simplejpeg", "click", "rich", "urllib3", "tensorboard",
)  # fmt: skip


def env(ctx: Context, rec: Recorder) -> None:
    """Versions, the GPU, and which SDPA backends are enabled."""
    rec.set(
        python=platform.python_version(),
        executable=sys.executable,
        platform=platform.platform(),
        cpus=os.cpu_count(),
        packages={name: _version(name) for name in PACKAGES},
        torch_cuda=torch.version.cuda,
        cuda_available=torch.cuda.is_available(),
    )
    if ctx.device.type != "cuda":
        return
    if not torch.cuda.is_available():
        raise RuntimeError("no CUDA device is visible to torch")
    props = torch.cuda.get_device_properties(ctx.device)
    rec.set(
        gpu=props.name,
        capability=f"{props.major}.{props.minor}",
        gpu_memory_gib=props.total_memory / 2**30,
        multiprocessors=props.multi_processor_count,
        cudnn=torch.backends.cudnn.version(),
        sdpa_enabled={
            "flash": torch.backends.cuda.flash_sdp_enabled(),
            "efficient": torch.backends.cuda.mem_efficient_sdp_enabled(),
            "cudnn": torch.backends.cuda.cudnn_sdp_enabled(),
            "math": torch.backends.cuda.math_sdp_enabled(),
        },
        nvidia_smi=nvidia_smi(),
    )


def step_b8(ctx: Context, rec: Recorder) -> None:
    """The step at batch 8 on one synthetic batch: time, memory, SDPA backends, bf16 coverage."""
    from bench.gpu.probes import matmul_dtypes, profile_steps
    from bench.gpu.step import run_step

    s = ctx.sizes
    setup = _timed(ctx, rec, s.batch, s.steps, grad_checkpointing=False, reserve_s=s.reserve_s)
    summary = rec.data
    slow = summary.get("vs_anchor") is not None and summary["median_step_s"] > ANCHORS["step_s"]
    write = ctx.trace == "always" or (ctx.trace == "auto" and slow)
    trace = ctx.out / "trace_step_b8.json.gz" if write else None
    rec.set(profile=profile_steps(lambda: run_step(setup), ctx.device, s.profile_steps, trace))
    coverage = matmul_dtypes(lambda: run_step(setup))
    # The step's matmul work over its median time: how far from the chip's matmul rate it is.
    rate = coverage["matmul_gflop"] / 1000 / summary["median_step_s"]
    rec.set(autocast=coverage, matmul_tflop_per_s=rate)


def step_b16_gc(ctx: Context, rec: Recorder) -> None:
    """Batch 16 with gradient checkpointing: does it fit, and how fast is it."""
    s = ctx.sizes
    try:
        _timed(ctx, rec, s.big_batch, s.big_steps, grad_checkpointing=True, reserve_s=5.0)
    except torch.cuda.OutOfMemoryError as exc:
        rec.set(fits=False, oom=str(exc).splitlines()[0])
        return
    rec.set(fits=True)


def loop(ctx: Context, rec: Recorder) -> None:
    """vla-train itself (defaults but base, batch, steps) on a set generated and converted here."""
    from bench.gpu.loop_figures import loop_figures, set_info, stream_set
    from shards.loader_plan import plan_loader
    from trainer.run.loop import train
    from trainer.run.metrics import METRICS_FILE, read_metrics
    from trainer.run.train_config import TrainConfig

    s = ctx.sizes
    shards = stream_set(
        ctx.work / "loop", s.loop_episodes, s.loop_episode_steps, s.loop_shard_samples, CAMERAS
    )
    rec.set(shard_set=set_info(shards))
    cfg = TrainConfig(
        shards=(str(shards),), run_dir=ctx.work / "loop" / "run", base=s.base,
        batch_size=s.batch, max_steps=s.loop_steps,
    )  # fmt: skip
    plan = plan_loader(cfg.workers, cfg.decode_threads)  # what vla-train will choose
    rec.set(
        options={"workers": plan.workers, "decode_threads": plan.decode_threads,
                 "loader": plan.reason, "shuffle_buffer": cfg.shuffle_buffer,
                 "image_aug": cfg.image_aug},
    )  # fmt: skip
    figures_of = (s.batch, s.loop_skip, ANCHORS["data_wait_goal"])
    stop = threading.Event()

    def watch() -> None:  # figures so far, in case the part is stopped at its budget
        while not stop.wait(5.0):
            if (cfg.run_dir / METRICS_FILE).exists():
                rec.set(**loop_figures(read_metrics(cfg.run_dir), *figures_of))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    start = time.perf_counter()
    try:
        train(cfg)
    finally:
        stop.set()
        watcher.join()
    saved = json.loads((cfg.run_dir / f"step-{s.loop_steps}" / "train_config.json").read_text())
    rec.set(train_s=time.perf_counter() - start, decode=saved["decode"])  # what auto chose
    rec.set(**loop_figures(read_metrics(cfg.run_dir), *figures_of))


def learn_tiny(ctx: Context, rec: Recorder) -> None:
    """The CPU learning test's two runs, on this device: learn from images, and not from blanks."""
    import tests.learning_fixtures as lf
    from trainer.run.metrics import read_metrics

    steps = ctx.sizes.learn_steps
    root = ctx.work / "learn"
    shards = lf.learning_set(root / "data")
    start = time.perf_counter()
    cfg = lf.train_tiny(shards, root / "run", steps=steps)
    rec.set(steps=steps, train_s=time.perf_counter() - start)
    train_l1, held_l1 = (lf.predicted_l1(shards, cfg.run_dir, split) for split in ("train", "val"))
    train_c, held_c = (lf.best_constant_l1(shards, split) for split in ("train", "val"))
    logged = read_metrics(cfg.run_dir)
    rec.set(
        train_l1=train_l1, train_constant=train_c, train_ratio=train_l1 / train_c,
        train_bound=lf.TRAIN_BOUND, train_pass=train_l1 < lf.TRAIN_BOUND * train_c,
        held_l1=held_l1, held_constant=held_c, held_ratio=held_l1 / held_c,
        held_bound=lf.HELD_BOUND, held_pass=held_l1 < lf.HELD_BOUND * held_c,
        loss_smooth_last=logged[-1]["loss_smooth"],
    )  # fmt: skip
    if steps == lf.STEPS:  # the CPU reference curve is for the full run only
        reference = json.loads(lf.CURVE_FILE.read_text())["loss_smooth"]
        mine = lf.curve(logged)
        gap = max(abs(a - b) for a, b in zip(mine, reference, strict=True))
        rec.set(curve_max_gap=gap, curve_cpu_tolerance=lf.CURVE_TOLERANCE)
    blank = lf.learning_set(root / "blank_data", blank_images=True)
    blank_cfg = lf.train_tiny(blank, root / "blank_run", steps=steps)
    blank_l1 = lf.predicted_l1(blank, blank_cfg.run_dir, "val")
    blank_c = lf.best_constant_l1(blank, "val")
    rec.set(
        blank_held_l1=blank_l1, blank_held_constant=blank_c, blank_ratio=blank_l1 / blank_c,
        blank_bound=lf.BLANK_BOUND, blank_pass=blank_l1 > lf.BLANK_BOUND * blank_c,
    )  # fmt: skip


def learn_7b(ctx: Context, rec: Recorder) -> None:
    """`base` streaming the learnable set for some steps: loss and gradient norm stay finite."""
    import tests.learning_fixtures as lf
    from bench.gpu.step import step_setup, time_steps
    from trainer.run.train_config import TrainConfig

    s = ctx.sizes
    shards = lf.learning_set(ctx.work / "learn_long")
    setup = step_setup(
        s.base, s.batch, CAMERAS, ctx.device, shards=str(shards), workers=TrainConfig.workers
    )
    rec.set(base=s.base, batch=s.batch, build_s=setup.build_s, steps_asked=s.long_steps)

    def record(times) -> None:
        rec.set(
            steps=len(times.step_s),
            loss=times.loss,
            grad_norm=times.grad_norm,
            finite=all(math.isfinite(v) for v in times.loss + times.grad_norm),
            median_step_s=statistics.median(times.step_s) if times.step_s else None,
        )

    time_steps(setup, 0, s.long_steps, ctx.deadline - 5, grad_norm=True, on_step=record)
    losses = rec.data["loss"]
    ends = max(1, min(10, len(losses) // 2))  # mean of the first and of the last (up to) 10
    rec.set(loss_first=statistics.mean(losses[:ends]), loss_last=statistics.mean(losses[-ends:]))


PARTS: dict[str, Callable[[Context, Recorder], None]] = {
    "env": env,
    "step_b8": step_b8,
    "step_b16_gc": step_b16_gc,
    "loop": loop,
    "learn_tiny": learn_tiny,
    "learn_7b": learn_7b,
    "decode": decode,  # after loop: it reads the loop's shard set
}


def _timed(
    ctx: Context, rec: Recorder, batch: int, steps: int, grad_checkpointing: bool, reserve_s: float
):
    """Build, then time steps on the synthetic batch, recording as they come.

    Timing stops `reserve_s` before the part's deadline, leaving that for what follows.
    """
    from bench.gpu.step import step_setup, time_steps

    s = ctx.sizes
    setup = step_setup(s.base, batch, CAMERAS, ctx.device, grad_checkpointing)
    rec.set(
        base=s.base, batch=batch, images=len(CAMERAS), grad_checkpointing=grad_checkpointing,
        build_s=setup.build_s, parameters=setup.run.model.trainable_parameters(),
    )  # fmt: skip
    anchored = s.base == BASE_7B and ctx.device.type == "cuda" and batch == 8

    def record(times) -> None:
        summary = times.summary(batch)
        rec.set(**summary, **(vs_anchors(summary) if anchored and times.step_s else {}))

    record(time_steps(setup, s.warmup, steps, ctx.deadline - reserve_s, on_step=record))
    return setup


def vs_anchors(summary: dict[str, Any]) -> dict[str, Any]:
    step = summary["median_step_s"]
    return {
        "vs_anchor": {
            "step_ratio": step / ANCHORS["step_s"],
            "samples_ratio": summary["samples_per_s"] / ANCHORS["samples_per_s"],
            "peak_ratio": summary["peak_allocated_gib"] / ANCHORS["peak_gib"],
            "goal_met": step <= ANCHORS["goal_step_s"],
            "moonshot_met": step <= ANCHORS["moonshot_step_s"],
        }
    }


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
