"""The learning check's recipe over 3 model seeds x 3 generator seeds: a table, median, worst.

One seed's run can cross a bound by luck; learning that holds has a margin at every seed.
Each run builds the check's set (tests/learning_fixtures.py) with its generator seed, trains
the tiny base with the check's options and its model seed, and reports the train split's L1
(evaluation view) and the held-out episode's, each over the best constant's on that split.
Runs go `--jobs` at a time, each in its own process on one thread.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import click

MODEL_SEEDS = (7, 1, 2)  # 7: the seed tests/test_learning.py trains with
GENERATOR_SEEDS = (0, 1, 2)  # vla-data generate --seed: the texture and the action noise


def one_run(model_seed: int, generator_seed: int, steps: int) -> dict:
    """Train once and measure; runs in a worker process."""
    import torch

    from tests.learning_fixtures import best_constant_l1, learning_set, predicted_l1, train_tiny

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        shards = learning_set(Path(tmp) / "data", seed=generator_seed)
        start = time.perf_counter()
        cfg = train_tiny(shards, Path(tmp) / "run", steps=steps, seed=model_seed)
        seconds = time.perf_counter() - start
        return {
            "model_seed": model_seed,
            "generator_seed": generator_seed,
            "train": predicted_l1(shards, cfg.run_dir, "train") / best_constant_l1(shards, "train"),
            "held": predicted_l1(shards, cfg.run_dir, "val") / best_constant_l1(shards, "val"),
            "seconds": seconds,
        }


def _worker_init() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"


def print_table(jobs: int, steps: int) -> None:
    """Run the 9 pairs `jobs` at a time; print each as it ends, then the table and summary."""
    pairs = [(m, g) for m in MODEL_SEEDS for g in GENERATOR_SEEDS]
    context = get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_worker_init) as pool:
        futures = [pool.submit(one_run, m, g, steps) for m, g in pairs]
        rows = []
        for future in futures:
            row = future.result()
            rows.append(row)
            print(
                f"model seed {row['model_seed']}, generator seed {row['generator_seed']}: "
                f"train {row['train']:.3f}x, held-out {row['held']:.3f}x "
                f"({row['seconds']:.0f} s)",
                flush=True,
            )
    print("\n| model seed | generator seed | train (x best constant) | held-out |")
    print("|---|---|---|---|")
    for row in rows:
        print(f"| {row['model_seed']} | {row['generator_seed']} | {row['train']:.3f} | "
              f"{row['held']:.3f} |")  # fmt: skip
    for name in ("train", "held"):
        values = [row[name] for row in rows]
        print(f"{name}: median {statistics.median(values):.3f}x, worst {max(values):.3f}x")


@click.command()
@click.option("--jobs", default=1, show_default=True, help="Runs at a time (one thread each).")
@click.option(
    "--steps", default=400, show_default=True, help="Steps of each run (the check's 400)."
)
def main(jobs: int, steps: int) -> None:
    print_table(jobs, steps)


if __name__ == "__main__":
    main()
