"""A fine-tuning run top to bottom: data, policy, optimizer, resume, steps, validation, saves."""

from __future__ import annotations

import math
import random
import time
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from common.errors import UserError
from shards.loader_plan import plan_loader
from shards.mixture import Mixture, open_mixture
from shards.reader import StreamState, check_stream, make_loader
from trainer.batches import BatchPrep, Prefetcher
from trainer.checkpoint import (
    CheckpointError,
    capture_rng,
    check_compatible,
    checkpoints,
    load_state,
    mixture_signature,
    restore_rng,
    resumable,
    save_checkpoint,
)
from trainer.config import DEFAULT_CAMERAS, ConfigError, TrainConfig, default_cameras
from trainer.distributed import Dist, gather_objects, init_distributed, shutdown, sum_across
from trainer.inputs import run_stream, uses_proprio
from trainer.metrics import METRICS_FILE, LossWindow, MetricsLogger, truncate_metrics
from trainer.model import ModelConfig, VLAPolicy, build_policy, load_policy
from trainer.model.model_config import base_dtype
from trainer.model.model_files import load_saved_weights
from trainer.oft import is_oft_folder, read_oft
from trainer.policy import load_oft_weights
from trainer.safety.run_folder import refuse_another_run, remove_stale_temps
from trainer.safety.run_lock import RunLock
from trainer.safety.stop_signals import RunStopped, StopSignals
from trainer.step import build_optimizer, build_scheduler, eval_sums, l1_metrics, train_step


def train(
    cfg: TrainConfig, resume: bool = False, allow_new_data: bool = False, ckpt: Path | None = None
) -> Path:
    """Train until cfg.max_steps; with `resume`, continue exactly from the run's newest whole
    step-N (`ckpt` when the caller already chose it).

    `allow_new_data` lets a resume go on with sets whose shards differ from the run's. The
    run holds RUN_DIR's lock throughout; SIGTERM or SIGINT saves after the step in progress
    and ends with RunStopped.
    """
    dist = init_distributed(cfg.device)
    plan = plan_loader(cfg.workers, cfg.decode_threads)
    # Saved with the run as numbers: a resume elsewhere reads the same streams in the same order.
    cfg = replace(cfg, workers=plan.workers, decode_threads=plan.decode_threads)
    try:
        with ExitStack() as held:
            if dist.main:
                held.enter_context(RunLock(cfg.run_dir))
                for line in remove_stale_temps(cfg.run_dir):
                    print(line, flush=True)
            stop = held.enter_context(StopSignals())
            run = _Run(resume, allow_new_data, ckpt, stop)
            _run(cfg, run, dist, plan.line())
    finally:
        shutdown()
    return cfg.run_dir


@dataclass
class _Run:
    """How this run starts and what may stop it."""

    resume: bool
    allow_new_data: bool
    ckpt: Path | None
    stop: StopSignals


def _run(cfg: TrainConfig, run: _Run, dist: Dist, loader_line: str) -> None:
    mixture = open_mixture(cfg.sources)
    if not cfg.cameras:  # chosen once; the checkpoint's config keeps the choice for resume
        cfg.cameras = default_cameras([s.manifest.cameras for s in mixture.sets])
        if dist.main and cfg.cameras != DEFAULT_CAMERAS:
            print(f"--cameras {','.join(cfg.cameras)}: the set has no {','.join(DEFAULT_CAMERAS)}")
    cfg = replace(cfg, proprio=uses_proprio(cfg.proprio, mixture))  # saved as decided
    check_stream(mixture, run_stream(cfg, "train", dist))
    if cfg.val_every:
        check_stream(mixture, run_stream(cfg, "val", dist))
    ckpt, state = _checkpoint_to_resume(cfg, run, mixture, dist)

    # Same seed on every rank: identical initial LoRA and head weights before DDP starts.
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    if ckpt:
        policy = load_policy(ckpt, device=dist.device)
    else:
        policy = build_policy(model_config(cfg, mixture, dist.device), dist.device)
        if cfg.init_from:
            init_weights(policy, Path(cfg.init_from), dist.device)
    model = policy
    if dist.world_size > 1:
        ids = [dist.device.index] if dist.device.type == "cuda" else None
        model = DistributedDataParallel(policy, device_ids=ids)
    optimizer = build_optimizer(policy, cfg.lr)
    scheduler = build_scheduler(optimizer, cfg.warmup_steps, cfg.decay_step)
    aug = torch.Generator().manual_seed(cfg.seed * 65537 + dist.rank)  # own crops per rank
    data_state, step, window = StreamState(), 0, LossWindow()
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        mine = state["ranks"][dist.rank]
        restore_rng(mine["rng"], aug)
        data_state, step = StreamState.from_dict(mine["data"]), state["step"]
        window = LossWindow(state.get("loss_window"))  # absent in checkpoints before it existed
        if dist.main:
            truncate_metrics(cfg.run_dir, step)

    action_stats = [s.stats.action for s in mixture.sets]
    proprio_stats = [s.stats.proprio for s in mixture.sets] if cfg.proprio else None
    prep = BatchPrep(
        action_stats, cfg.normalization, dist.device, cfg.image_aug, aug, proprio_stats
    )
    loader = make_loader(mixture, run_stream(cfg, "train", dist), data_state)
    batches = Prefetcher(loader, policy.tokenize, prep, dist.device, data_state)
    logger = MetricsLogger(cfg.run_dir, step, cfg.max_steps, dist.main)
    logger.message(_start_line(ckpt, policy, mixture, dist))
    logger.message(loader_line)
    try:
        while step < cfg.max_steps:
            start, waited = time.perf_counter(), batches.wait_s
            lr = optimizer.param_groups[0]["lr"]
            sums = train_step(model, batches, cfg.grad_accum, optimizer, scheduler, dist.device)
            # The stop request travels with the step's sums: every rank stops after one step.
            stopping = run.stop.requested is not None
            counts = [len(data_state.bad_shards), len(data_state.bad_samples), int(stopping)]
            totals = sum_across(torch.cat([sums, torch.tensor(counts).to(sums)]))
            step += 1
            elapsed = time.perf_counter() - start
            l1 = l1_metrics(totals[:6])
            check_finite_loss(l1["loss"], step, cfg)
            logger.log(
                {
                    "step": step,
                    "split": "train",
                    **l1,
                    "loss_smooth": window.add(l1["loss"]),
                    "lr": lr,
                    "samples_per_s": cfg.batch_size * cfg.grad_accum * dist.world_size / elapsed,
                    "data_wait": (batches.wait_s - waited) / elapsed,
                    "bad_shards": int(totals[6]),
                    "bad_samples": int(totals[7]),
                }
            )
            if cfg.val_every and step % cfg.val_every == 0:
                for record in validate(policy, mixture, cfg, dist, prep, step):
                    logger.log(record)
            stopping = bool(totals[8])  # asked on any rank: all save this step, then stop
            if step % cfg.save_every == 0 or step == cfg.max_steps or stopping:
                # Every rank's RNG and stream position: each resumes its own part exactly.
                ranks = gather_objects({"rng": capture_rng(aug), "data": data_state.to_dict()})
                if dist.main:
                    train_state = {
                        "step": step,
                        "sets": mixture_signature(mixture),
                        "world_size": dist.world_size,
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "ranks": ranks,
                        "loss_window": window.to_list(),
                    }
                    path = save_checkpoint(cfg.run_dir, step, policy, cfg, mixture, train_state)
                    logger.message(f"saved {path}")
            if stopping:
                raise RunStopped(
                    f"{run.stop.requested or 'stop requested'}: stopped after step {step}, "
                    f"saved in {cfg.run_dir / f'step-{step}'}; go on with: vla-train --resume "
                    f"{cfg.run_dir}"
                )
    finally:
        logger.close()


def check_finite_loss(loss: float, step: int, cfg: TrainConfig) -> None:
    """Stop at the first loss that is not a number: nothing after it is worth saving."""
    if not math.isfinite(loss):
        saved = checkpoints(cfg.run_dir)
        last = f"the last checkpoint, {saved[-1][1]}, is kept" if saved else "nothing was saved"
        raise TrainingDiverged(
            f"step {step}: the training loss is {loss}; stopped without saving ({last}); "
            f"lower --lr (it is {cfg.lr:g}) or check the data"
        )


class TrainingDiverged(UserError):
    """The loss stopped being a number (too high a learning rate, broken data)."""


def init_weights(policy: VLAPolicy, source: Path, device: torch.device) -> None:
    """LoRA and head from a step-N folder or an OFT folder; the head does not depend on the
    chunk, so an OFT head (chunks of 8 or 25) can start a run of any chunk.

    Checked here, not with the options: a resumed run loads its own step-N and no longer
    needs the folder it started from."""
    if not source.is_dir():
        raise ConfigError(f"--init-from {source}: no such checkpoint folder")
    if is_oft_folder(source):
        load_oft_weights(policy, read_oft(source))
    else:
        load_saved_weights(policy, source, device)


def _checkpoint_to_resume(
    cfg: TrainConfig, run: _Run, mixture: Mixture, dist: Dist
) -> tuple[Path | None, dict[str, Any] | None]:
    """The run's newest whole step-N and its state when resuming, checked against this data."""
    if not run.resume:
        if checkpoints(cfg.run_dir):
            raise CheckpointError(
                f"{cfg.run_dir} already holds checkpoints: continue it with --resume "
                f"{cfg.run_dir}, or choose another --run-dir"
            )
        refuse_another_run(cfg.run_dir, METRICS_FILE)
        return None, None
    ckpt, state = (run.ckpt, load_state(run.ckpt)) if run.ckpt else resumable(cfg.run_dir)
    check_compatible(state, ckpt, mixture, dist.world_size, run.allow_new_data)
    return ckpt, state


def _start_line(ckpt: Path | None, policy: VLAPolicy, mixture: Mixture, dist: Dist) -> str:
    counts = policy.trainable_parameters()
    sets = ", ".join(
        f"{s.manifest.dataset} (weight {w:g}, {s.manifest.samples('train'):,} train samples)"
        for s, w in zip(mixture.sets, mixture.weights, strict=True)
    )
    return (
        f"{f'resuming {ckpt}' if ckpt else 'training'}: {counts['total']:,} trainable "
        f"parameters (LoRA {counts['lora']:,}, head {counts['head']:,}"
        + "".join(f", {name} {counts[name]:,}" for name in ("proprio", "film") if counts[name])
        + f") on {dist.world_size} x {dist.device.type}; {sets}"
    )


def validate(
    policy: VLAPolicy, mixture: Mixture, cfg: TrainConfig, dist: Dist, prep: BatchPrep, step: int
) -> list[dict[str, Any]]:
    """L1 over every set's whole val split, each rank reading its own part of it.

    One pooled "val" record, then with several sets one "val/DATASET" record per set.
    """
    loader = make_loader(mixture, run_stream(cfg, "val", dist))
    batches = Prefetcher(loader, policy.tokenize, prep, dist.device, train=False)
    sums = sum_across(eval_sums(policy, batches, dist.device, len(mixture.sets)))
    records = [_val_record(step, "val", sums.sum(0), mixture.action_dim)]
    if len(mixture.sets) > 1:
        records += [
            _val_record(step, f"val/{name}", set_sums, mixture.action_dim)
            for name, set_sums in zip(mixture.datasets, sums, strict=True)
        ]
    return records


def _val_record(step: int, split: str, sums: torch.Tensor, action_dim: int) -> dict[str, Any]:
    samples = int(sums[3]) // action_dim  # row 0 counts D values per sample
    return {"step": step, "split": split, **l1_metrics(sums), "samples": samples}


def model_config(cfg: TrainConfig, mixture: Mixture, device: torch.device) -> ModelConfig:
    return ModelConfig(
        base=cfg.base,
        action_dim=mixture.action_dim,
        chunk=mixture.chunk,
        num_images=len(cfg.cameras),
        lora_rank=cfg.lora_rank,
        grad_checkpointing=cfg.grad_checkpointing,
        proprio_dim=(mixture.sets[0].manifest.proprio_dim or 0) if cfg.proprio else 0,
        film=cfg.film,
        dtype=base_dtype(device),
    )
