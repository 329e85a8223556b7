"""Experiment trackers a run reports to besides metrics.jsonl: TensorBoard and Weights & Biases."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import string
from pathlib import Path
from typing import Any, Protocol

from common.errors import UserError
from trainer.run.train_config import TrainConfig

TENSORBOARD_DIR = "tensorboard"
WANDB_ID_FILE = "wandb_run_id"  # in RUN_DIR: --resume goes on logging to the same W&B run


class TrackerError(UserError):
    """A tracker the user asked for cannot start (not installed, not logged in)."""


class Tracker(Protocol):
    def record(self, step: int, metrics: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


def scalars(metrics: dict[str, Any]) -> dict[str, float]:
    """A metrics record as SPLIT/NAME -> number, the names both trackers chart."""
    split = metrics["split"]
    return {
        f"{split}/{name}": value
        for name, value in metrics.items()
        if name not in ("step", "split") and isinstance(value, (int, float))
    }


class TensorBoardTracker:
    """RUN_DIR/tensorboard/ event files (`tensorboard --logdir RUN_DIR`)."""

    def __init__(self, run_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(run_dir / TENSORBOARD_DIR))

    def record(self, step: int, metrics: dict[str, Any]) -> None:
        for name, value in scalars(metrics).items():
            self.writer.add_scalar(name, value, step)

    def close(self) -> None:
        self.writer.close()


class WandbTracker:
    """A W&B run holding the run's options as its config; its id is kept in RUN_DIR, so a
    resumed run logs on in the same W&B run. WANDB_MODE=offline writes it under
    RUN_DIR/wandb/ for a later `wandb sync`."""

    def __init__(self, cfg: TrainConfig) -> None:
        try:
            import wandb
        except ImportError:
            raise TrackerError(
                "--wandb needs the wandb package: pip install 'vla-shards[wandb]'"
            ) from None
        id_file = cfg.run_dir / WANDB_ID_FILE
        run_id = id_file.read_text().strip() if id_file.exists() else new_run_id()
        try:
            self.run = wandb.init(
                project=cfg.wandb_project,
                entity=cfg.wandb_entity,
                id=run_id,
                resume="allow",
                name=cfg.run_dir.name,
                dir=str(cfg.run_dir),
                config=json.loads(cfg.to_json()),
            )
        except Exception as exc:  # wandb raises many kinds (usage, network, auth)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise TrackerError(
                f"--wandb {cfg.wandb_project}: W&B did not start ({first}); run `wandb login`, "
                "or set WANDB_MODE=offline to log locally and `wandb sync` later"
            ) from None
        if not id_file.exists():
            tmp = id_file.with_name(id_file.name + ".tmp")
            tmp.write_text(run_id + "\n")
            os.replace(tmp, id_file)

    def record(self, step: int, metrics: dict[str, Any]) -> None:
        self.run.log(scalars(metrics), step=step)

    def close(self) -> None:
        self.run.finish()


def new_run_id() -> str:
    """Eight lowercase letters and digits, the form of the ids W&B gives runs."""
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))


def open_trackers(cfg: TrainConfig) -> list[Tracker]:
    """TensorBoard when it is installed (the `tensorboard` extra); W&B when --wandb is given."""
    trackers: list[Tracker] = []
    with contextlib.suppress(ImportError):  # optional: metrics.jsonl always has everything
        trackers.append(TensorBoardTracker(cfg.run_dir))
    if cfg.wandb_project:
        try:
            trackers.append(WandbTracker(cfg))
        except BaseException:
            for tracker in trackers:
                tracker.close()
            raise
    return trackers
