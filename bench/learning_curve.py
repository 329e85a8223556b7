"""The learning check's run, recorded: loss every 10 steps to tests/assets/, and a plot.

Builds the same set as tests/test_learning.py (generated episodes whose action chunk follows
a red square's place in the image, one episode held out), trains the tiny base with vla-train's
defaults, and writes
- tests/assets/tiny_learning_curve.json: the smoothed train loss every 10 steps, which
  tests/test_learning.py compares its own run against;
- docs/learning_curve.png: that curve beside the best constant prediction's L1.
It prints the final train and held-out L1, each beside the best constant's, and the time taken.
With --table it then runs the same recipe at 3 model x 3 generator seeds and prints the 9
runs' table with its median and worst (bench/learning_seeds.py, also runnable alone).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import click

from bench.learning_seeds import print_table
from tests.learning_fixtures import (
    CURVE_EVERY,
    CURVE_FILE,
    best_constant_l1,
    curve,
    learning_set,
    predicted_l1,
    train_tiny,
)
from trainer.run.metrics import read_metrics

ROOT = Path(__file__).resolve().parents[1]


@click.command()
@click.option("--plot", type=click.Path(path_type=Path), default=ROOT / "docs/learning_curve.png")
@click.option("--curve-file", type=click.Path(path_type=Path), default=CURVE_FILE)
@click.option("--table", is_flag=True, help="Then the 9-run table over 3 x 3 seeds.")
@click.option("--jobs", default=1, show_default=True, help="--table's runs at a time.")
def main(plot: Path, curve_file: Path, table: bool, jobs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        shards = learning_set(Path(tmp) / "data")
        built = time.perf_counter()
        cfg = train_tiny(shards, Path(tmp) / "run")
        trained = time.perf_counter()
        records = read_metrics(cfg.run_dir)
        held = predicted_l1(shards, cfg.run_dir, "val")
        train_eval = predicted_l1(shards, cfg.run_dir, "train")
        train_constant = best_constant_l1(shards, "train")
        held_constant = best_constant_l1(shards, "val")
    points = curve(records)
    curve_file.parent.mkdir(parents=True, exist_ok=True)
    curve_file.write_text(json.dumps({"every": CURVE_EVERY, "loss_smooth": points}, indent=1))
    _plot(plot, records, train_constant)
    final = records[-1]["loss_smooth"]
    print(
        f"{len(records)} steps of batch {cfg.batch_size}: set built in {built - start:.0f} s, "
        f"trained in {trained - built:.0f} s ({len(records) / (trained - built):.2f} steps/s)"
    )
    print(f"train L1 (mean of last 50 steps, augmented) {final:.3f} = "
          f"{final / train_constant:.2f}x the best constant ({train_constant:.3f})")  # fmt: skip
    print(f"train L1 (evaluation view) {train_eval:.3f} = {train_eval / train_constant:.2f}x")
    print(f"held-out L1 {held:.3f} = {held / held_constant:.2f}x the best constant "
          f"({held_constant:.3f})")  # fmt: skip
    print(f"wrote {curve_file} and {plot}")
    if table:
        print_table(jobs, len(records))


def _plot(path: Path, records: list[dict], constant: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in records]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, [r["loss"] for r in records], lw=0.6, alpha=0.4, label="train L1 (step)")
    ax.plot(steps, [r["loss_smooth"] for r in records], lw=2, label="train L1 (mean of 50)")
    ax.axhline(constant, color="grey", ls="--", label="best constant prediction")
    ax.set_xlabel("step (batch 8)")
    ax.set_ylabel("L1 on normalized actions")
    ax.set_title("tiny base, actions that only the image tells")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
