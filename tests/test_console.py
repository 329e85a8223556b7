"""The run's console: summary lines every N steps in a log, a live line on a terminal."""

from __future__ import annotations

import io
import re

from rich.console import Console

from trainer.run.console import RunConsole, format_seconds


def _train(step: int) -> dict:
    return {
        "step": step, "split": "train", "loss": 0.5 / step, "loss_smooth": 0.4, "curr_l1": 0.3,
        "future_l1": 0.2, "lr": 5e-4, "samples_per_s": 12.5, "data_wait": 0.25,
        "bad_shards": 0, "bad_samples": 0,
    }  # fmt: skip


def _run(console: Console, steps: int, log_every: int) -> str:
    shown = RunConsole(0, steps, log_every, console)
    for step in range(1, steps + 1):
        shown.record(step, _train(step))
    shown.record(steps, {"step": steps, "split": "val", "loss": 0.1, "curr_l1": 0.1,
                         "future_l1": 0.1, "samples": 9})  # fmt: skip
    shown.message("saved run/step-103")
    shown.close()
    return console.file.getvalue()


def test_a_log_gets_one_plain_line_every_n_steps():
    text = _run(Console(file=io.StringIO(), force_terminal=False, width=40), 103, 25)
    lines = text.splitlines()
    summaries = [ln for ln in lines if " train " in ln]
    # Steps 25, 50, 75, 100 and the last one; nothing redrawn, no escape codes, no wrapping
    # at the 40-column width (a Slurm log is read with grep).
    assert [ln.split()[1] for ln in summaries] == ["25", "50", "75", "100", "103"]
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f]", text)
    assert summaries[0].startswith("step 25 train loss 0.0200 (mean of last 50 0.4000)")
    assert "12.5 samples/s data wait 25% ETA " in summaries[0]
    assert re.search(r"ETA \d+:\d\d:\d\d$", summaries[0])
    assert lines[-2:] == [
        "step 103 val loss 0.1000 curr 0.1000 future 0.1000",
        "saved run/step-103",
    ]
    assert len(lines) == 7


def test_a_terminal_shows_the_live_line():
    text = _run(Console(file=io.StringIO(), force_terminal=True, width=160), 40, 1000)
    assert "\x1b[" in text  # drawn in place with cursor moves
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    # The final live line: step/max, loss, pace and data wait; only the last step's summary.
    assert "step 40/40" in plain and "loss 0.0125 12.5 samples/s data wait 25%" in plain
    assert plain.count(" train loss ") == 1 and "step 40 train loss" in plain
    assert "saved run/step-103" in plain


def test_format_seconds():
    assert format_seconds(0) == "0:00:00"
    assert format_seconds(3723.4) == "1:02:03"
    assert format_seconds(50000 * 0.9) == "12:30:00"
