"""A fine-tuning run top to bottom: data, policy, optimizer, resume, steps, validation, saves."""

from __future__ import annotations

import random
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from shards.loader_plan import plan_loader
from shards.mixture import Mixture, open_mixture
from shards.reader import StreamState, check_stream, make_loader
from trainer.data.batches import BatchPrep, Prefetcher
from trainer.model import ActionModel, ModelConfig, build_model, load_model
from trainer.model.model_config import base_dtype
from trainer.model.model_files import load_saved_weights
from trainer.model.oft_files import is_oft_folder, load_oft_weights, read_oft
from trainer.run.checkpoint import (
    CheckpointError,
    capture_rng,
    check_compatible,
    checkpoints,
    latest_checkpoint,
    load_state,
    mixture_signature,
    restore_rng,
    save_checkpoint,
)
from trainer.run.distributed import Dist, gather_objects, init_distributed, shutdown, sum_across
from trainer.run.metrics import LossWindow, MetricsLogger, truncate_metrics
from trainer.run.step import build_optimizer, build_scheduler, eval_sums, l1_metrics, train_step
from trainer.run.streams import run_stream, uses_proprio
from trainer.run.train_config import DEFAULT_CAMERAS, ConfigError, TrainConfig, default_cameras


def train(cfg: TrainConfig, resume: bool = False, allow_new_data: bool = False) -> Path:
    """Train until cfg.max_steps; with `resume`, continue exactly from the run's latest step-N.

    `allow_new_data` lets a resume go on with sets whose shards differ from the run's.
    """
    dist = init_distributed(cfg.device)
    plan = plan_loader(cfg.workers, cfg.decode_threads)
    # Saved with the run as numbers: a resume elsewhere reads the same streams in the same order.
    cfg = replace(cfg, workers=plan.workers, decode_threads=plan.decode_threads)
    try:
        _run(cfg, resume, dist, allow_new_data, plan.line())
    finally:
        shutdown()
    return cfg.run_dir


def _run(
    cfg: TrainConfig, resume: bool, dist: Dist, allow_new_data: bool, loader_line: str
) -> None:
    mixture = open_mixture(cfg.sources)
    if not cfg.cameras:  # chosen once; the checkpoint's config keeps the choice for resume
        cfg.cameras = default_cameras([s.manifest.cameras for s in mixture.sets])
        if dist.main and cfg.cameras != DEFAULT_CAMERAS:
            print(f"--cameras {','.join(cfg.cameras)}: the set has no {','.join(DEFAULT_CAMERAS)}")
    cfg = replace(cfg, proprio=uses_proprio(cfg.proprio, mixture))  # saved as decided
    check_stream(mixture, run_stream(cfg, "train", dist))
    if cfg.val_every:
        check_stream(mixture, run_stream(cfg, "val", dist))
    ckpt, state = _checkpoint_to_resume(cfg, resume, mixture, dist, allow_new_data)

    # Same seed on every rank: identical initial LoRA and head weights before DDP starts.
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    if ckpt:
        policy = load_model(ckpt, device=dist.device)
    else:
        policy = build_model(model_config(cfg, mixture, dist.device), dist.device)
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
            bad = torch.tensor([len(data_state.bad_shards), len(data_state.bad_samples)])
            totals = sum_across(torch.cat([sums, bad.to(sums)]))
            step += 1
            elapsed = time.perf_counter() - start
            l1 = l1_metrics(totals[:6])
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
            if step % cfg.save_every == 0 or step == cfg.max_steps:
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
    finally:
        logger.close()


def init_weights(policy: ActionModel, source: Path, device: torch.device) -> None:
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
    cfg: TrainConfig, resume: bool, mixture: Mixture, dist: Dist, allow_new_data: bool
) -> tuple[Path | None, dict[str, Any] | None]:
    """The run's latest step-N and its state when resuming, checked against this data."""
    if not resume:
        if checkpoints(cfg.run_dir):
            raise CheckpointError(
                f"{cfg.run_dir} already holds checkpoints: continue it with --resume "
                f"{cfg.run_dir}, or choose another --run-dir"
            )
        return None, None
    ckpt = latest_checkpoint(cfg.run_dir)
    state = load_state(ckpt)
    check_compatible(state, ckpt, mixture, dist.world_size, allow_new_data)
    return ckpt, state


def _start_line(ckpt: Path | None, policy: ActionModel, mixture: Mixture, dist: Dist) -> str:
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
    policy: ActionModel, mixture: Mixture, cfg: TrainConfig, dist: Dist, prep: BatchPrep, step: int
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
