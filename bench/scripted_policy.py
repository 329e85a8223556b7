"""The simulator harness proven: the built-in scripted policy's and a zero policy's success
rates over seeded episodes of each ALOHA task (physics only, nothing rendered).

    .venv/bin/python -m bench.scripted_policy [--episodes 20 --seed 0 --max-steps 400]

A harness that lets the scripted policy fail, or the zero policy succeed, is broken; the
figures are in docs/EVALUATION.md.
"""

from __future__ import annotations

import time

import click

from sim.evaluate import builtin_policy
from sim.rollout import rollouts
from sim.world import ENVS, World


@click.command()
@click.option("--episodes", default=20, show_default=True)
@click.option("--seed", default=0, show_default=True, help="Episode i resets with SEED + i.")
@click.option("--max-steps", default=400, show_default=True)
def main(episodes: int, seed: int, max_steps: int) -> None:
    seeds = [seed + i for i in range(episodes)]
    rows = []
    for env in ENVS:
        world = World(env)
        for name in ("scripted", "zero"):
            start = time.perf_counter()
            results = list(rollouts(world, builtin_policy(name, world), seeds, max_steps))
            wins = sum(r.success for r in results)
            steps = [len(r.rewards) for r in results if r.success]
            rows.append(
                f"{env:20} {name:9} {wins:3}/{len(results)} ({100 * wins / len(results):5.1f}%)"
                f"  mean max reward {sum(r.max_reward for r in results) / len(results):.2f}"
                f"  steps to success {min(steps, default=0)}-{max(steps, default=0)}"
                f"  {time.perf_counter() - start:.0f} s"
            )
    click.echo("\n".join(rows))


if __name__ == "__main__":
    main()
