"""The GPU check's decode part: samples/s of the loader decoding JPEGs on the CPU (vla-train's
auto plan) against the GPU decoding them (nvJPEG through torchvision), on the same shards,
in alternating rounds, with the CPU loader's share of bare decoding on every core (the decode
bound); and what `--decode auto` picks at the reference step's pace.

On a machine whose torch cannot decode on CUDA the part records why it did not run.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from bench.gpu.part_context import Context, Recorder

BATCHES = (8, 32)
ROUNDS = 3  # per side, alternating, so a drift of the machine reaches both alike
BATCHES_PER_ROUND = 40  # timed after each round's first batch: workers starting left out


def decode(ctx: Context, rec: Recorder) -> None:
    """CPU decode vs device decode at batch 8 and 32, medians of alternating rounds."""
    from bench.gpu.loop_figures import set_info, stream_set
    from bench.gpu.part_context import ANCHORS, CAMERAS
    from shards.loader_plan import plan_loader
    from trainer.data.device_decode import device_decode_problem

    problem = device_decode_problem(ctx.device)
    if problem is not None:
        rec.set(not_run=f"{problem}: no device decode to measure")
        return
    s = ctx.sizes
    shards = ctx.work / "loop" / "shards"  # the loop part's set, when it ran first
    if not (shards / "manifest.json").is_file():
        shards = stream_set(
            ctx.work / "decode", s.loop_episodes, s.loop_episode_steps, s.loop_shard_samples,
            CAMERAS,
        )  # fmt: skip
    plan = plan_loader()  # vla-train's default: auto
    rec.set(shard_set=set_info(shards), loader=plan.line(), rounds=ROUNDS)
    for batch in BATCHES:
        rates = compare_rounds(shards, plan, batch, CAMERAS, ctx.device, ROUNDS, BATCHES_PER_ROUND)
        rec.set(**{f"b{batch}": rates})
    rec.set(pixels=pixel_gap(shards, CAMERAS, ctx.device))
    cpu_rate = rec.data["b8"]["cpu_samples_per_s"]
    rec.set(auto_b8=auto_pick(cpu_rate, 8, ANCHORS["step_s"]))


def compare_rounds(
    shards: Path,
    plan: Any,
    batch: int,
    cameras: tuple[str, ...],
    device: torch.device,
    rounds: int,
    batches: int,
) -> dict[str, Any]:
    """samples/s of `rounds` rounds each side, alternating CPU and device; their medians.

    Each round also times the decode bound: the same frames' JPEG bytes, in memory, decoded
    by one thread per core with nothing else to do (bench.decode_threads), so the CPU
    loader's share of it is measured on this machine's cores, beside the loader."""
    from bench.decode_threads import decode_bound, frames_of
    from shards.loader_plan import available_cores
    from shards.source import open_shard_set

    shard_set = open_shard_set(shards)
    frames = frames_of(shard_set, cameras)
    cores, size = available_cores()[0], shard_set.manifest.image_size
    rates: dict[str, list[float]] = {"cpu": [], "device": [], "bound": []}
    for r in range(rounds):
        for side in ("cpu", "device"):
            cfg = _stream(plan, batch, cameras, device, side == "device", seed=r)
            rates[side].append(loader_rate(shard_set, cfg, device, batches))
        rates["bound"].append(decode_bound(frames, size, cores, batch * batches))
    cpu, dev, bound = (statistics.median(rates[side]) for side in ("cpu", "device", "bound"))
    return {
        "cpu_rounds": rates["cpu"],
        "device_rounds": rates["device"],
        "bound_rounds": rates["bound"],
        "cpu_samples_per_s": cpu,
        "device_samples_per_s": dev,
        "device_over_cpu": dev / cpu,
        "bound_samples_per_s": bound,
        "bound_threads": cores,
        # Round by round: the loader and the bound are timed a moment apart in each.
        "cpu_share_of_bound": statistics.median(
            c / b for c, b in zip(rates["cpu"], rates["bound"], strict=True)
        ),
    }


def _stream(plan: Any, batch: int, cameras: tuple[str, ...], device: torch.device,
            on_device: bool, seed: int) -> Any:  # fmt: skip
    from shards.stream import StreamConfig

    return StreamConfig(
        cameras=cameras, batch_size=batch, seed=seed, workers=plan.workers,
        decode_threads=plan.decode_threads, pin_memory=device.type == "cuda",
        jpeg_bytes=on_device,
    )  # fmt: skip


def loader_rate(shard_set: Any, cfg: Any, device: torch.device, batches: int) -> float:
    """Samples/s of `batches` batches reaching `device` as uint8 images, after the first.

    The CPU side's images are copied to the device, the device side's JPEGs decoded there:
    each ends where BatchPrep starts."""
    from shards.reader import make_loader
    from trainer.data.device_decode import decoded_batch

    loader = iter(make_loader(shard_set, cfg))
    start, samples = 0.0, 0
    try:
        for k in range(batches + 1):
            batch = next(loader)
            if "jpegs" in batch:
                images = decoded_batch(batch, device)["images"]
            else:
                images = batch["images"].to(device, non_blocking=True)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if k == 0:
                start = time.perf_counter()
            else:
                samples += images.shape[0]
    finally:
        loader.close()
    return samples / (time.perf_counter() - start)


def pixel_gap(shards: Path, cameras: tuple[str, ...], device: torch.device) -> dict[str, Any]:
    """How far the device's decode of a batch lands from the loader's (simplejpeg), in uint8
    levels: why a resume keeps the run's decode location."""
    from shards.reader import make_loader
    from shards.source import open_shard_set
    from shards.stream import StreamConfig
    from trainer.data.device_decode import decoded_batch

    shard_set = open_shard_set(shards)
    first = []
    for on_device in (False, True):
        cfg = StreamConfig(cameras=cameras, batch_size=32, finite=True, jpeg_bytes=on_device)
        first.append(next(iter(make_loader(shard_set, cfg))))
    on_device = decoded_batch(first[1], device)["images"].cpu()
    gap = (on_device.int() - first[0]["images"].int()).abs()
    return {
        "images": gap.shape[0] * gap.shape[1],
        "max": int(gap.max()),
        "mean": float(gap.float().mean()),
        "equal_share": float((gap == 0).float().mean()),
    }


def auto_pick(cpu_samples_per_s: float, batch: int, step_s: float) -> dict[str, Any]:
    """What `--decode auto` decides for a step of `step_s` fed by a loader of this rate.

    The loader fills the next batch while a step runs, so each step waits for what loading
    takes beyond the step: the window auto measures would show that share."""
    from trainer.run.decode_choice import choose_decode

    load_s = batch / cpu_samples_per_s
    wait_s = max(0.0, load_s - step_s)
    choice = choose_decode(wait_s, step_s + wait_s)
    return {"step_s": step_s, "wait_share": wait_s / (step_s + wait_s), "where": choice.where,
            "reason": choice.reason}  # fmt: skip
