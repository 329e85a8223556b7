"""Run metrics: RUN_DIR/metrics.jsonl, handed on to the trackers and the console."""

from __future__ import annotations

import json
import logging
import math
from collections import deque
from pathlib import Path
from typing import Any

from rich.console import Console

from trainer.run.console import SMOOTH_STEPS, RunConsole
from trainer.run.trackers import open_trackers
from trainer.run.train_config import TrainConfig

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"


class LossWindow:
    """Mean of the last SMOOTH_STEPS train losses: a step's L1 on a small batch jumps by +-0.1.

    Its contents are saved with each checkpoint, so a resumed run logs the same means.
    """

    def __init__(self, losses: list[float] | None = None) -> None:
        self.losses: deque[float] = deque(losses or (), maxlen=SMOOTH_STEPS)

    def add(self, loss: float) -> float:
        self.losses.append(loss)
        return sum(self.losses) / len(self.losses)

    def to_list(self) -> list[float]:
        return list(self.losses)


def truncate_metrics(run_dir: Path, last_step: int) -> None:
    """Drop lines past `last_step`: a resumed run logs those steps again."""
    path = run_dir / METRICS_FILE
    if not path.exists():
        return
    records = _records(path)
    path.write_text("".join(json.dumps(r) + "\n" for r in records if r["step"] <= last_step))


def read_metrics(run_dir: Path, split: str = "train") -> list[dict[str, Any]]:
    return [r for r in _records(run_dir / METRICS_FILE) if r["split"] == split]


def _records(path: Path) -> list[dict[str, Any]]:
    """Every record of a metrics file; a kill mid-write can leave its last line torn."""
    lines = path.read_text().splitlines()
    try:
        last = [json.loads(lines[-1])] if lines else []
    except ValueError:
        log.warning("%s: ignoring a torn last line (the run was stopped mid-write)", path)
        last = []
    return [json.loads(ln) for ln in lines[:-1]] + last


class MetricsLogger:
    """Each step's records to metrics.jsonl, the trackers and the console; inert on ranks
    other than 0. The loop hands it every record once, through record()."""

    def __init__(
        self, cfg: TrainConfig, first_step: int, enabled: bool, console: Console | None = None
    ) -> None:
        self.enabled = enabled
        if not enabled:
            return
        cfg.run_dir.mkdir(parents=True, exist_ok=True)
        self.trackers = open_trackers(cfg)
        self.file = open(cfg.run_dir / METRICS_FILE, "a")  # noqa: SIM115 - closed in close()
        self.console = RunConsole(first_step, cfg.max_steps, cfg.log_every, console)

    def record(self, step: int, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        metrics = {k: _finite_or_none(v) for k, v in metrics.items()}
        self.file.write(json.dumps(metrics, allow_nan=False) + "\n")
        self.file.flush()  # a crash loses at most the current line
        for tracker in self.trackers:
            tracker.record(step, metrics)
        self.console.record(step, metrics)

    def message(self, text: str) -> None:
        if self.enabled:
            self.console.message(text)

    def close(self) -> None:
        if not self.enabled:
            return
        self.console.close()
        for tracker in self.trackers:
            tracker.close()
        self.file.close()


def _finite_or_none(value: Any) -> Any:
    """JSON has no NaN or Infinity: such a figure is written as null, keeping the file JSON."""
    return None if isinstance(value, float) and not math.isfinite(value) else value
