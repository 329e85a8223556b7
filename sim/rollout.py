"""Policies acting in the simulated world: one episode, then many with a running success rate."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from sim.world import SUCCESS_REWARD, Observation, World


class SimPolicy(Protocol):
    """What the rollout asks of a policy: the cameras it reads, and chunks of joint targets."""

    cameras: tuple[str, ...]
    """Simulator cameras the policy reads; only these (and a video's) are rendered."""

    def reset(self, obs: Observation) -> None: ...

    def act(self, obs: Observation) -> np.ndarray:
        """(n, 14) actions to run from this observation on, n >= 1."""
        ...


class StepSink(Protocol):
    """Receives an episode as it runs (a video, an episode file)."""

    def step(self, obs: Observation, action: np.ndarray) -> None:
        """The observation an action was chosen from, and the action."""

    def end(self, obs: Observation) -> None:
        """The observation after the last action: the record is complete and kept."""

    def close(self) -> None:
        """Release the sink; a record not ended (an error stopped it) leaves nothing."""


@dataclass
class EpisodeResult:
    episode_ix: int
    seed: int
    rewards: list[float] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return bool(self.rewards) and max(self.rewards) >= SUCCESS_REWARD

    @property
    def sum_reward(self) -> float:
        return float(sum(self.rewards))

    @property
    def max_reward(self) -> float:
        return float(max(self.rewards, default=0.0))


def run_episode(
    world: World,
    policy: SimPolicy,
    result: EpisodeResult,
    max_steps: int,
    execute_steps: int | None = None,
    sink: StepSink | None = None,
) -> EpisodeResult:
    """Reset to the result's seed and act until success (which ends the episode, as in
    gym-aloha) or `max_steps`; of each chunk the first `execute_steps` run open-loop (all
    of it when None) before the policy is asked again."""
    obs = world.reset(result.seed)
    policy.reset(obs)
    while obs.step < max_steps and not result.success:
        chunk = np.asarray(policy.act(obs))
        if chunk.ndim != 2 or not len(chunk):
            raise ValueError(f"a policy answers (n, 14) actions with n >= 1, got {chunk.shape}")
        for action in chunk[:execute_steps]:
            if sink is not None:
                sink.step(obs, action)
            obs, reward = world.step(action)
            result.rewards.append(reward)
            if reward >= SUCCESS_REWARD or obs.step >= max_steps:
                break
    if sink is not None:
        sink.end(obs)
    return result


def rollouts(
    world: World,
    policy: SimPolicy,
    seeds: Sequence[int],
    max_steps: int,
    execute_steps: int | None = None,
    sink_for: Callable[[int], StepSink | None] = lambda ix: None,
    label: str = "episodes",
) -> Iterator[EpisodeResult]:
    """One episode per seed, with a progress bar showing the success rate so far.

    `sink_for(ix)` may give a sink recording episode ix; the world renders the cameras the
    policy reads, plus `top` while a sink records.
    """
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("success {task.fields[rate]}"),
        TimeElapsedColumn(),
    )
    wins = 0
    with Progress(*columns, console=Console(stderr=True)) as progress:
        task = progress.add_task(label, total=len(seeds), rate="-")
        for ix, seed in enumerate(seeds):
            sink = sink_for(ix)
            world.render(tuple(dict.fromkeys([*policy.cameras, *(("top",) if sink else ())])))
            try:
                result = run_episode(
                    world, policy, EpisodeResult(ix, seed), max_steps, execute_steps, sink
                )
            finally:
                if sink is not None:
                    sink.close()
            wins += result.success
            progress.update(task, advance=1, rate=f"{wins}/{ix + 1} ({100 * wins / (ix + 1):.0f}%)")
            yield result
