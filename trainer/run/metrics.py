"""Run metrics: RUN_DIR/metrics.jsonl, a console line or progress bar, TensorBoard if installed."""

from __future__ import annotations

import json
import logging
import sys
from collections import deque
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
SMOOTH_STEPS = 50


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
    """Writes one JSON object per step and split; inert on ranks other than 0."""

    def __init__(self, run_dir: Path, first_step: int, max_steps: int, enabled: bool) -> None:
        self.enabled = enabled
        if not enabled:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        self.file = open(run_dir / METRICS_FILE, "a")  # noqa: SIM115 - closed in close()
        self.tensorboard = _tensorboard(run_dir)
        self.progress = None
        if sys.stdout.isatty():
            self.progress = Progress(
                TextColumn("step {task.completed}/{task.total}"),
                BarColumn(),
                TextColumn("{task.description}"),
                TimeRemainingColumn(),
            )
            self.task = self.progress.add_task("", total=max_steps, completed=first_step)
            self.progress.start()

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()  # a crash loses at most the current line
        step, split = record["step"], record["split"]
        if self.tensorboard is not None:
            for name, value in record.items():
                if name not in ("step", "split") and isinstance(value, (int, float)):
                    self.tensorboard.add_scalar(f"{split}/{name}", value, step)
        line = _summary(record)
        if self.progress is None:
            print(f"step {step} {line}", flush=True)
        elif split == "train":
            self.progress.update(self.task, completed=step, description=line)
        else:
            self.progress.console.print(f"step {step} {line}")

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self.progress is not None:
            self.progress.console.print(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if not self.enabled:
            return
        if self.progress is not None:
            self.progress.stop()
        if self.tensorboard is not None:
            self.tensorboard.close()
        self.file.close()


def _summary(record: dict[str, Any]) -> str:
    parts = [record["split"], f"loss {record['loss']:.4f}"]
    if "loss_smooth" in record:
        parts.append(f"(mean of last {SMOOTH_STEPS} {record['loss_smooth']:.4f})")
    parts.append(f"curr {record['curr_l1']:.4f} future {record['future_l1']:.4f}")
    if record["split"] == "train":
        parts.append(f"lr {record['lr']:.2e} {record['samples_per_s']:.1f} samples/s")
        parts.append(f"data wait {record['data_wait']:.0%}")
        if record["bad_shards"] or record["bad_samples"]:
            parts.append(f"bad shards {record['bad_shards']} samples {record['bad_samples']}")
    return " ".join(parts)


def _tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional; metrics.jsonl always has everything
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))
