"""vla-train's loop, top to bottom: build the run, step, validate, save, log."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from common.errors import UserError
from shards.loader_plan import plan_loader
from shards.reader import make_loader
from trainer.data.batches import Prefetcher
from trainer.data.device_decode import device_decode_problem
from trainer.run.builder import Run, build_run, open_data
from trainer.run.checkpoint import checkpoints, resume_point, save_checkpoint
from trainer.run.decode_choice import (
    AUTO,
    CPU,
    DEVICE,
    WINDOW_STEPS,
    DecodeChoice,
    choose_decode,
    start_decode,
    window_steps,
)
from trainer.run.distributed import init_distributed, shutdown, sum_across
from trainer.run.metrics import MetricsLogger, truncate_metrics
from trainer.run.run_folder import remove_stale_temps
from trainer.run.run_lock import RunLock
from trainer.run.step import eval_sums, l1_metrics, train_step
from trainer.run.stop_signals import RunStopped, StopSignals
from trainer.run.streams import run_stream
from trainer.run.train_config import ConfigError, TrainConfig


def train(
    cfg: TrainConfig, resume: bool = False, allow_new_data: bool = False, ckpt: Path | None = None
) -> Path:
    """Train until cfg.max_steps; with `resume`, continue exactly from the run's newest whole
    step-N (`ckpt` when the caller already chose it).

    `allow_new_data` lets a resume go on with sets whose shards or statistics differ from the
    run's. The run holds RUN_DIR's lock throughout; SIGTERM or SIGINT saves after the step in
    progress and ends it with RunStopped.
    """
    dist = init_distributed(cfg.device)
    plan = plan_loader(cfg.workers, cfg.decode_threads)
    # Saved with the run as numbers: a resume elsewhere reads the same streams in the same order.
    cfg = replace(cfg, workers=plan.workers, decode_threads=plan.decode_threads)
    try:
        decode = run_decode(cfg.decode, dist.device, cfg.run_dir if resume else None)
        # Saved as decided, so a resume decodes where the run did (the pixels may differ).
        cfg = replace(cfg, decode=decode.where)
        with ExitStack() as held:
            if dist.main:  # before any data or model is opened: a busy folder costs nothing
                held.enter_context(RunLock(cfg.run_dir))
                for line in remove_stale_temps(cfg.run_dir):
                    print(line, flush=True)
            stop = held.enter_context(StopSignals())
            cfg, mixture = open_data(cfg, dist)
            ckpt, state = resume_point(
                cfg.run_dir, resume, mixture, dist.world_size, allow_new_data, ckpt
            )
            run = build_run(cfg, dist, mixture, ckpt)
            if state is not None:
                run.load_state_dict(state)
                if dist.main:
                    truncate_metrics(cfg.run_dir, run.step)
            _steps(run, ckpt, f"{plan.line()}; {decode.line()}", stop)
    finally:
        shutdown()
    return cfg.run_dir


def _steps(run: Run, ckpt: Path | None, loader_line: str, stop: StopSignals) -> None:
    """Step, validate and save to max_steps, or until a stop is asked for."""
    cfg = run.cfg
    batches = run.train_batches()
    logger = MetricsLogger(cfg, run.step, run.dist.main)
    first, window = run.step, []
    try:
        logger.message(start_line(run, ckpt))
        logger.message(loader_line)
        while run.step < cfg.max_steps:
            record, stopping = step_record(run, batches, stop.requested is not None)
            logger.record(run.step, record)
            if run.cfg.decode == AUTO and window_steps(first, run.step):
                batches = auto_decode_step(run, batches, record, window, logger.message)
            if cfg.val_every and run.step % cfg.val_every == 0:
                for val in validate(run):
                    logger.record(run.step, val)
            if run.step % cfg.save_every == 0 or run.step == cfg.max_steps or stopping:
                save(run, logger)
            if stopping:
                raise RunStopped(
                    f"{stop.requested or 'stop requested'}: stopped after step {run.step}, "
                    f"saved in {cfg.run_dir / f'step-{run.step}'}; go on with: vla-train "
                    f"--resume {cfg.run_dir}"
                )
    finally:
        logger.close()


def run_decode(asked: str, device: torch.device, resumed: Path | None = None) -> DecodeChoice:
    """--decode for this run's device: `device` where it can't decode is the user's error
    (a `resumed` run keeps where it decoded: the decoders' pixels may differ)."""
    problem = device_decode_problem(device) if asked != CPU else None
    if asked == DEVICE and problem is not None:
        if resumed is not None:
            raise ConfigError(
                f"{resumed}: the run decoded its JPEGs on the GPU (--decode device) and resumes "
                f"so, but here: {problem}; resume it on a GPU, or start a new --run-dir"
            )
        raise ConfigError(f"--decode device: {problem}; use --decode cpu or auto")
    return start_decode(asked, problem)


def auto_decode_step(
    run: Run,
    batches: Prefetcher,
    record: dict[str, Any],
    window: list[float],
    say: Callable[[str], None],
) -> Prefetcher:
    """One step of `auto`'s window measured; at its end, the decision (the same on every
    rank: their figures are summed), and a loader that decodes on the GPU if it so decides.

    The new loader starts where data_state stands, so no batch is skipped or repeated."""
    step_s = run.cfg.batch_size * run.cfg.grad_accum * run.dist.world_size / record["samples_per_s"]
    window += [record["data_wait"] * step_s, step_s]
    if len(window) < 2 * WINDOW_STEPS:
        return batches
    totals = sum_across(torch.tensor([sum(window[::2]), sum(window[1::2])], device=run.dist.device))
    choice = choose_decode(float(totals[0]), float(totals[1]))
    run.cfg = replace(run.cfg, decode=choice.where)
    say(f"loader: {choice.line()}")
    if choice.where != DEVICE:
        return batches
    batches.close()
    return run.train_batches()


def step_record(run: Run, batches: Prefetcher, stop: bool = False) -> tuple[dict[str, Any], bool]:
    """One optimizer step over grad_accum micro-batches; its train record, summed over ranks,
    and whether any rank was asked to stop (`stop` is this rank's request).

    A loss that is not a number stops the run here, before it is logged or saved."""
    cfg, dist = run.cfg, run.dist
    start, waited = time.perf_counter(), batches.wait_s
    lr = run.optimizer.param_groups[0]["lr"]
    sums = train_step(
        run.trained,
        batches,
        cfg.grad_accum,
        run.optimizer,
        run.scheduler,
        dist.device,
        cfg.precision,
    )
    # The stop request travels with the step's sums: every rank stops after the same step.
    counts = [len(run.data_state.bad_shards), len(run.data_state.bad_samples), int(stop)]
    totals = sum_across(torch.cat([sums, torch.tensor(counts).to(sums)]))
    run.step += 1
    elapsed = time.perf_counter() - start
    l1 = l1_metrics(totals[:6])
    check_finite_loss(l1["loss"], run.step, cfg)
    record = {
        "step": run.step,
        "split": "train",
        **l1,
        "loss_smooth": run.window.add(l1["loss"]),
        "lr": lr,
        "samples_per_s": cfg.batch_size * cfg.grad_accum * dist.world_size / elapsed,
        "data_wait": (batches.wait_s - waited) / elapsed,
        "bad_shards": int(totals[6]),
        "bad_samples": int(totals[7]),
    }
    return record, bool(totals[8])


class TrainingDiverged(UserError):
    """The loss stopped being a number (too high a learning rate, broken data)."""


def check_finite_loss(loss: float, step: int, cfg: TrainConfig) -> None:
    """Stop at the first loss that is not a number: nothing after it is worth saving."""
    if not math.isfinite(loss):
        saved = checkpoints(cfg.run_dir)
        last = f"the last checkpoint, {saved[-1][1]}, is kept" if saved else "nothing was saved"
        raise TrainingDiverged(
            f"step {step}: the training loss is {loss}; stopped without saving ({last}); "
            f"lower --lr (it is {cfg.lr:g}) or check the data"
        )


def save(run: Run, logger: MetricsLogger) -> None:
    """RUN_DIR/step-N/: the model, stats, options and the run's state_dict (written by rank 0)."""
    state = run.state_dict()  # on every rank: it gathers each rank's stream and RNGs
    if run.dist.main:
        path = save_checkpoint(run.cfg.run_dir, run.step, run.model, run.cfg, run.mixture, state)
        logger.message(f"saved {path}")


def validate(run: Run) -> list[dict[str, Any]]:
    """L1 over every set's whole val split, each rank reading its own part of it.

    One pooled "val" record, then with several sets one "val/DATASET" record per set.
    """
    mixture, device = run.mixture, run.dist.device
    loader = make_loader(mixture, run_stream(run.cfg, "val", run.dist))
    batches = Prefetcher(loader, run.model.tokenize, run.prep, device, train=False)
    sums = sum_across(eval_sums(run.model, batches, device, len(mixture.sets), run.cfg.precision))
    records = [_val_record(run.step, "val", sums.sum(0), mixture.action_dim)]
    if len(mixture.sets) > 1:
        records += [
            _val_record(run.step, f"val/{name}", set_sums, mixture.action_dim)
            for name, set_sums in zip(mixture.datasets, sums, strict=True)
        ]
    return records


def _val_record(step: int, split: str, sums: torch.Tensor, action_dim: int) -> dict[str, Any]:
    samples = int(sums[3]) // action_dim  # row 0 counts D values per sample
    return {"step": step, "split": split, **l1_metrics(sums), "samples": samples}


def start_line(run: Run, ckpt: Path | None) -> str:
    counts = run.model.trainable_parameters()
    mixture = run.mixture
    sets = ", ".join(
        f"{s.manifest.dataset} (weight {w:g}, {s.manifest.samples('train'):,} train samples)"
        for s, w in zip(mixture.sets, mixture.weights, strict=True)
    )
    return (
        f"{f'resuming {ckpt}' if ckpt else 'training'}: {counts['total']:,} trainable "
        f"parameters (LoRA {counts['lora']:,}, head {counts['head']:,}"
        + "".join(f", {name} {counts[name]:,}" for name in ("proprio", "film") if counts[name])
        + f") on {run.dist.world_size} x {run.dist.device.type}; {sets}"
    )
