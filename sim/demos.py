"""Scripted demonstrations recorded as ALOHA simulation episodes, for training and tests."""

from __future__ import annotations

from pathlib import Path

from sim.records import AlohaEpisodeSink
from sim.rollout import EpisodeResult, rollouts
from sim.scripted import ScriptedPolicy
from sim.world import SimError, World


def record_demos(
    env: str, out_dir: Path, episodes: int, seed: int = 0, max_steps: int = 400
) -> list[tuple[Path, EpisodeResult]]:
    """Write out_dir/episode_{i}.hdf5 for seeds seed..seed+episodes-1; each episode ends at
    success (as the environment does) or after max_steps."""
    if episodes < 1 or max_steps < 1:
        raise SimError("--episodes and --steps must both be at least 1")
    world = World(env)  # an unknown env stops here, before anything is written
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"episode_{i}.hdf5" for i in range(episodes)]
    seeds = [seed + i for i in range(episodes)]
    results = rollouts(
        world,
        ScriptedPolicy(env, world.physics.model.ptr),
        seeds,
        max_steps,
        sink_for=lambda ix: AlohaEpisodeSink(paths[ix]),
        label=f"{env} scripted",
    )
    return list(zip(paths, results, strict=True))
