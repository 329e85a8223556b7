"""Run helpers shared by the training tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from trainer.run.checkpoint import STATE_FILE
from trainer.run.loop import train
from trainer.run.metrics import read_metrics
from trainer.run.train_config import TrainConfig


def straight_and_resumed(tmp_path: Path, total: int, **options: Any) -> tuple[list, list]:
    """metrics.jsonl of `total` steps in one go, and of total/2 steps then --resume to total."""
    straight = TrainConfig(run_dir=tmp_path / "straight", max_steps=total, **options)
    train(straight)
    halves = TrainConfig(run_dir=tmp_path / "halves", max_steps=total // 2, **options)
    train(halves)
    train(TrainConfig.from_json(halves.to_json(), "test").resumed({"max_steps": total}), True)
    return read_metrics(straight.run_dir), read_metrics(halves.run_dir)


def stream_epochs(step_dir: Path) -> list[int]:
    """The epoch each stream of a checkpoint stands in, set by set (rank 0's streams)."""
    state = torch.load(step_dir / STATE_FILE, weights_only=True)
    positions = state["ranks"][0]["data"]["positions"].values()
    return [epoch for position in positions for epoch, _ in position["sets"]]
