"""What a run reads: the stream of its samples, and the robot state when its sets carry it."""

from __future__ import annotations

from shards.mixture import Mixture
from shards.stream import StreamConfig
from trainer.run.decode_choice import DEVICE
from trainer.run.distributed import Dist
from trainer.run.train_config import ConfigError, TrainConfig


def run_stream(cfg: TrainConfig, split: str, dist: Dist | None = None) -> StreamConfig:
    """How the run `cfg` reads `split`: its cameras, batch size, seed, shuffling, robot state
    and episode tails.

    With `dist`, as training reads: each rank its part, with the run's worker processes and
    decode threads, train endlessly reshuffled and val in one pass. Without, as `vla-train
    predict` reads: the whole split in one unshuffled pass, in this process.
    """
    placement = {}
    if dist is not None:
        placement = {
            "rank": dist.rank,
            "world_size": dist.world_size,
            "workers": cfg.workers,
            "decode_threads": cfg.decode_threads,
            "pin_memory": dist.device.type == "cuda",
            "jpeg_bytes": cfg.decode == DEVICE,  # the JPEGs left for the GPU to decode
        }
    return StreamConfig(
        split=split,
        cameras=cfg.cameras,
        batch_size=cfg.batch_size,
        shuffle_buffer=cfg.shuffle_buffer,
        seed=cfg.seed,
        finite=dist is None or split == "val",
        proprio=bool(cfg.proprio),
        drop_tail=cfg.episode_tail == "drop",
        **placement,
    )


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
