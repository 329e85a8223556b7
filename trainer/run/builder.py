"""One training run assembled: data, model, optimizer, schedule, and the state an exact resume
restores. vla-train's loop, the GPU benches and the loadtest all build through here."""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from shards.mixture import Mixture, open_mixture
from shards.platforms import platform
from shards.reader import StreamState, check_stream, make_loader
from trainer.data.batches import BatchPrep, Prefetcher
from trainer.model import ActionModel, ModelConfig, build_model, load_model
from trainer.model.model_config import base_dtype
from trainer.model.model_files import load_saved_weights
from trainer.model.oft_files import ADAPTER_DIR, is_oft_folder, load_oft_weights, read_oft
from trainer.run.checkpoint import capture_rng, mixture_signature, restore_rng
from trainer.run.distributed import Dist, gather_objects
from trainer.run.memory_plan import check_gpu_memory
from trainer.run.metrics import LossWindow
from trainer.run.step import build_optimizer, build_scheduler
from trainer.run.streams import run_stream, uses_proprio
from trainer.run.train_config import (
    DEFAULT_CAMERAS,
    DEFAULT_NORMALIZATION,
    ConfigError,
    TrainConfig,
    default_cameras,
)


@dataclass
class Run:
    """Everything a run steps and saves. `model` is the network a checkpoint holds; `trained`
    is what forward runs through (the same module, or its DDP or torch.compile wrapper)."""

    cfg: TrainConfig
    dist: Dist
    mixture: Mixture
    model: ActionModel
    trained: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    prep: BatchPrep  # device-side batch preparation: crops, normalization with each set's stats
    aug: torch.Generator  # this rank's augmentation draws
    data_state: StreamState = field(default_factory=StreamState)
    step: int = 0
    window: LossWindow = field(default_factory=LossWindow)

    def train_batches(self, loader: Any = None) -> Prefetcher:
        """The training stream from where `data_state` stands, on the device one batch ahead.

        `loader`: raw batches of another source instead (a bench's one synthetic batch); they
        carry no stream position, so `data_state` does not follow them."""
        if loader is not None:
            return Prefetcher(loader, self.model.tokenize, self.prep, self.dist.device)
        loader = make_loader(
            self.mixture, run_stream(self.cfg, "train", self.dist), self.data_state
        )
        return Prefetcher(loader, self.model.tokenize, self.prep, self.dist.device, self.data_state)

    def state_dict(self) -> dict[str, Any]:
        """What trainer_state.pt holds. Collective: every rank calls it, since every rank's RNG
        and stream position are gathered, so that each resumes its own part exactly."""
        ranks = gather_objects({"rng": capture_rng(self.aug), "data": self.data_state.to_dict()})
        return {
            "step": self.step,
            "sets": mixture_signature(self.mixture),
            "world_size": self.dist.world_size,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "ranks": ranks,
            "loss_window": self.window.to_list(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a state_dict(); before train_batches(), which reads from its position."""
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        mine = state["ranks"][self.dist.rank]
        restore_rng(mine["rng"], self.aug)
        self.data_state = StreamState.from_dict(mine["data"])
        self.step = state["step"]
        self.window = LossWindow(state.get("loss_window"))  # absent in checkpoints before it


def open_data(cfg: TrainConfig, dist: Dist) -> tuple[TrainConfig, Mixture]:
    """The run's shard sets opened, and what the config left to them decided: the cameras and
    whether the robot state is fed (saved with the run as decided). Both streams checked."""
    mixture = open_mixture(cfg.sources)
    if not cfg.cameras:  # chosen once; the checkpoint's config keeps the choice for resume
        cameras = default_cameras([s.manifest.cameras for s in mixture.sets])
        cfg = replace(cfg, cameras=cameras)
        if dist.main and cameras != DEFAULT_CAMERAS:
            print(f"--cameras {','.join(cameras)}: the set has no {','.join(DEFAULT_CAMERAS)}")
    cfg = replace(cfg, proprio=uses_proprio(cfg.proprio, mixture))
    cfg = with_robot(cfg, mixture)
    check_stream(mixture, run_stream(cfg, "train", dist))
    if cfg.val_every:
        check_stream(mixture, run_stream(cfg, "val", dist))
    return cfg, mixture


def with_robot(cfg: TrainConfig, mixture: Mixture) -> TrainConfig:
    """The sets' OFT platform (when every set names the same --robot) and the normalization
    it implies when --normalization was not given."""
    robots = {s.manifest.options.get("robot") for s in mixture.sets}
    robot = robots.pop() if len(robots) == 1 else None
    default = platform(robot).normalization if robot else DEFAULT_NORMALIZATION
    return replace(cfg, robot=robot, normalization=cfg.normalization or default)


def build_run(
    cfg: TrainConfig,
    dist: Dist,
    mixture: Mixture,
    ckpt: Path | None = None,
    compile_model: bool = False,
    fused_adamw: bool = False,
) -> Run:
    """A fresh run at step 0: the model (from `ckpt`, or built and started from
    cfg.init_from), AdamW, the schedule and the batch preparation. Resume with
    load_state_dict."""
    check_gpu_memory(cfg, dist.device)
    # Same seed on every rank: identical initial LoRA and head weights before DDP starts.
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    if ckpt:
        model = load_model(ckpt, device=dist.device)
    else:
        model = build_model(model_config(cfg, mixture, dist.device), dist.device)
        if cfg.init_from:
            init_weights(model, Path(cfg.init_from), dist.device)
    trained: nn.Module = model
    if dist.world_size > 1:
        ids = [dist.device.index] if dist.device.type == "cuda" else None
        trained = DistributedDataParallel(model, device_ids=ids)
    if compile_model:
        trained = torch.compile(trained)
    optimizer = build_optimizer(model, cfg.lr, fused_adamw)
    scheduler = build_scheduler(optimizer, cfg.warmup_steps, cfg.decay_step)
    aug = torch.Generator().manual_seed(cfg.seed * 65537 + dist.rank)  # own crops per rank
    action_stats = [s.stats.action for s in mixture.sets]
    proprio_stats = [s.stats.proprio for s in mixture.sets] if cfg.proprio else None
    prep = BatchPrep(
        action_stats, cfg.normalization, dist.device, cfg.image_aug, aug, proprio_stats
    )
    return Run(cfg, dist, mixture, model, trained, optimizer, scheduler, prep, aug)


def init_weights(model: ActionModel, source: Path, device: torch.device) -> None:
    """LoRA and head from a step-N folder or an OFT folder; the head does not depend on the
    chunk, so an OFT head (chunks of 8 or 25) can start a run of any chunk.

    Checked here, not with the options: a resumed run loads its own step-N and no longer
    needs the folder it started from."""
    if not source.is_dir():
        raise ConfigError(f"--init-from {source}: no such checkpoint folder")
    if is_oft_folder(source):
        load_oft_weights(model, read_oft(source))
    else:
        load_saved_weights(model, source, device)


def model_base(cfg: TrainConfig) -> str:
    """--base, or the merged weights of a merged-only OFT folder given as --init-from: LoRA
    then starts afresh (at zero change) on them, and its head, state projector and FiLM maps
    are loaded; the saved model config records that folder as the base."""
    source = Path(cfg.init_from) if cfg.init_from else None
    if source and is_oft_folder(source) and not (source / ADAPTER_DIR).is_dir():
        return str(source)
    return cfg.base


def model_config(cfg: TrainConfig, mixture: Mixture, device: torch.device) -> ModelConfig:
    return ModelConfig(
        base=model_base(cfg),
        action_dim=mixture.action_dim,
        chunk=mixture.chunk,
        num_images=len(cfg.cameras),
        lora_rank=cfg.lora_rank,
        grad_checkpointing=cfg.grad_checkpointing,
        proprio_dim=(mixture.sets[0].manifest.proprio_dim or 0) if cfg.proprio else 0,
        film=cfg.film,
        dtype="bfloat16" if cfg.precision == "bf16" else base_dtype(device),
    )
