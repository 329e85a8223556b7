"""Which optional inputs a run feeds the model: the robot state when its sets carry it."""

from __future__ import annotations

from shards.mixture import Mixture
from trainer.config import ConfigError


def uses_proprio(choice: bool | None, mixture: Mixture) -> bool:
    """--proprio / --no-proprio as given, or by default whether every set carries a state.

    A state only some sets carry, or of different sizes, cannot feed one projector: refused.
    """
    if choice is False:
        return False
    dims = [s.manifest.proprio_dim or 0 for s in mixture.sets]
    stats = [s.stats.proprio is not None for s in mixture.sets]
    if all(dims) and all(stats) and len(set(dims)) == 1:
        return True
    if choice is None and not any(dims):
        return False
    described = ", ".join(
        f"{s.source}: {f'{d} values' if d and has else 'none'}"
        for s, d, has in zip(mixture.sets, dims, stats, strict=True)
    )
    if len(mixture.sets) == 1:
        raise ConfigError(
            f"--proprio: {described}; its episodes carried no robot state (or stats.json has "
            "no proprio statistics): train without --proprio"
        )
    raise ConfigError(
        f"the robot state (proprio) must be carried by every set, with one size, to be fed "
        f"to the model ({described}); pass --no-proprio to train on images and instructions"
    )
