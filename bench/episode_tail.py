"""--episode-tail pad against drop: held-out L1 on whole chunks and on episodes' last steps.

Trains the tiny base on the learning check's set (tests/learning_fixtures.py: actions follow a
red square the cameras show, one episode held out) twice, the same seed and steps, once with
each --episode-tail, and prints side by side the held-out normalized L1 of
- samples whose chunk lies inside the episode (both runs train on such samples), and
- the episode's last chunk-1 samples, over their real rows (drop never trains on these),
each with the ratio drop / pad. One seed, one held-out episode: a check that pad costs
nothing on whole chunks, not a precise figure.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import click
import numpy as np

from shards.reader import StreamConfig, make_loader
from shards.source import open_shard_set
from tests.learning_fixtures import BATCH, STEPS, learning_set  # the set its test defines
from trainer.inference.policy import Policy
from trainer.run.loop import train
from trainer.run.train_config import TrainConfig


def held_out_l1(shards: Path, ckpt: Path) -> tuple[float, float]:
    """Normalized L1 over the val split's real rows: (whole-chunk samples, tail samples)."""
    policy = Policy.load(ckpt, device="cpu")
    stream = StreamConfig(split="val", cameras=policy.cameras, batch_size=16, finite=True)
    sums = np.zeros((2, 2))  # [whole, tail] x [|error| sum, values]
    for batch in make_loader(open_shard_set(shards), stream):
        predicted = policy.predict_stored(batch["images"].numpy(), batch["instructions"])
        target = policy.normalize(batch["actions"].numpy())
        chunk = target.shape[1]
        for i, valid in enumerate(batch["valid"].tolist()):
            error = np.abs(predicted[i, :valid] - target[i, :valid])
            sums[int(valid < chunk)] += (error.sum(), error.size)
    return sums[0, 0] / sums[0, 1], sums[1, 0] / sums[1, 1]


@click.command()
@click.option("--steps", default=STEPS, show_default=True)
@click.option("--seed", default=TrainConfig.seed, show_default=True)
def main(steps: int, seed: int) -> None:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        shards = learning_set(Path(tmp) / "data")
        for tail in ("pad", "drop"):
            start = time.perf_counter()
            cfg = TrainConfig(
                shards=(str(shards),), run_dir=Path(tmp) / tail, base="tiny", max_steps=steps,
                batch_size=BATCH, episode_tail=tail, seed=seed,
            )  # fmt: skip
            train(cfg)
            results[tail] = held_out_l1(shards, cfg.run_dir / f"step-{steps}")
            print(f"{tail}: trained {steps} steps in {time.perf_counter() - start:.0f} s")
    print(f"{'held-out normalized L1':<34}{'pad':>8}{'drop':>8}{'drop/pad':>10}")
    for k, label in enumerate(("whole chunks", "episodes' last chunk-1 steps")):
        pad, drop = results["pad"][k], results["drop"][k]
        print(f"{label:<34}{pad:>8.4f}{drop:>8.4f}{drop / pad:>10.2f}")


if __name__ == "__main__":
    main()
