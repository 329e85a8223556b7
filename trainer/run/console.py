"""The run's console: a live progress line on a terminal, a summary line every N steps."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

SMOOTH_STEPS = 50  # train losses averaged in "mean of last"; also metrics.LossWindow's length


class RunConsole:
    """What a person (or a Slurm log) sees of a run.

    On a terminal, one live line (step/max, loss, samples/s, data wait, ETA) redrawn in place,
    with the summary and validation lines printed above it. Elsewhere (a log file, a pipe)
    plain lines only, one per `log_every` steps, so a 50,000-step run writes 1,000 of them.
    """

    def __init__(
        self, first_step: int, max_steps: int, log_every: int, console: Console | None = None
    ) -> None:
        self.console = console or Console(soft_wrap=True)
        self.max_steps, self.log_every = max_steps, log_every
        self.since = (first_step, time.monotonic())  # step and time of the last summary
        self.live = None
        if self.console.is_terminal:
            self.live = Progress(
                TextColumn("step {task.completed}/{task.total}"),
                BarColumn(),
                TextColumn("{task.description}"),
                TimeRemainingColumn(),
                console=self.console,
            )
            self.task = self.live.add_task("", total=max_steps, completed=first_step)
            self.live.start()

    def record(self, step: int, record: dict[str, Any]) -> None:
        """Show one metrics record: train records feed the live line and every log_every-th
        (and the last) a summary line; other splits (validation) always print."""
        if record["split"] != "train":
            self.message(f"step {step} {summary(record)}")
            return
        if self.live is not None:
            self.live.update(self.task, completed=step, description=live_text(record))
        if step % self.log_every == 0 or step == self.max_steps:
            self.message(f"step {step} {summary(record)} ETA {self._eta(step)}")

    def message(self, text: str) -> None:
        # markup and highlighting off: paths and figures print as they are, in any log.
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()

    def _eta(self, step: int) -> str:
        """Time left at the pace since the last summary line (the steps before it, with the
        start-up and any validation, would skew it)."""
        last_step, last_time = self.since
        now = time.monotonic()
        self.since = (step, now)
        if step <= last_step:
            return "-"
        return format_seconds((self.max_steps - step) * (now - last_time) / (step - last_step))


def format_seconds(seconds: float) -> str:
    """H:MM:SS, the way rich's ETA column shows time."""
    whole = round(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def live_text(record: dict[str, Any]) -> str:
    return (
        f"loss {record['loss']:.4f} {record['samples_per_s']:.1f} samples/s "
        f"data wait {record['data_wait']:.0%}"
    )


def summary(record: dict[str, Any]) -> str:
    """A record as one line: its split, losses and, for train, lr, pace and skipped data."""
    parts = [record["split"], f"loss {_figure(record['loss'])}"]
    if "loss_smooth" in record:
        parts.append(f"(mean of last {SMOOTH_STEPS} {_figure(record['loss_smooth'])})")
    parts.append(f"curr {_figure(record['curr_l1'])} future {_figure(record['future_l1'])}")
    if record["split"] == "train":
        parts.append(f"lr {record['lr']:.2e} {record['samples_per_s']:.1f} samples/s")
        parts.append(f"data wait {record['data_wait']:.0%}")
        if record["bad_shards"] or record["bad_samples"]:
            parts.append(f"bad shards {record['bad_shards']} samples {record['bad_samples']}")
    return " ".join(parts)


def _figure(value: float | None) -> str:
    return "nan" if value is None else f"{value:.4f}"
