"""`vla-train predict`: a checkpoint's chunks next to the true ones of a shard set, with L1."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from shards.format import SPLITS
from shards.reader import make_loader
from shards.source import ShardSet, ShardSetError, open_shard_set
from stats.normalize import NORMALIZATIONS
from trainer.inference.checkpoint_info import CheckpointInfo, read_checkpoint
from trainer.inference.policy import Policy
from trainer.model.oft_files import OftOptions, is_oft_folder
from trainer.run.streams import run_stream
from trainer.run.train_config import ConfigError

SHOWN_DIMS = 4  # of the first row in the table; the L1 columns cover every dim and valid row
PIPED_WIDTH = 160  # rich's 80 columns off a terminal would squeeze the table unreadable


@dataclass
class PredictConfig:
    """Which checkpoint to check against which samples."""

    ckpt: Path
    """A RUN_DIR/step-N folder, or an OpenVLA-OFT checkpoint folder."""
    shards: str
    """Shard set folder or URL whose samples are predicted."""
    split: str = "val"
    samples: int = 16
    """Samples, in the set's order; 0 for the whole split."""
    base: str | None = None
    """Base to load the adapter onto; default the one the run trained on."""
    dataset: str | None = None
    """Stats entry of the checkpoint; default the set's dataset, or the only one."""
    device: str = "auto"
    cameras: tuple[str, ...] = ()
    """OFT folders only: cameras in the order the run fed them; default the set's cameras."""
    normalization: str | None = None
    """OFT folders only; default OFT's for the action width (bounds for 14 dims)."""

    def __post_init__(self) -> None:
        self.ckpt = Path(self.ckpt)
        self.cameras = tuple(self.cameras)
        if self.normalization is not None and self.normalization not in NORMALIZATIONS:
            raise ConfigError(f"--normalization must be one of {', '.join(NORMALIZATIONS)}")
        if self.split not in SPLITS:
            raise ConfigError(f"--split must be one of {', '.join(SPLITS)}")
        if self.samples < 0:
            raise ConfigError("-n/--samples must not be negative (0: the whole split)")


@dataclass
class Comparison:
    """One sample: predicted and true (chunk, D) in action units, L1 over its valid rows."""

    key: str
    instruction: str
    predicted: np.ndarray
    true: np.ndarray
    valid: int
    l1: float
    l1_normalized: float


@dataclass
class PredictReport:
    ckpt: Path
    dataset: str  # whose statistics denormalized the predictions
    rows: list[Comparison]
    # Pooled over every valid value, as validation pools: comparable with the logged val loss.
    l1: float
    l1_normalized: float


def compare(cfg: PredictConfig) -> PredictReport:
    """Predict the split's first cfg.samples samples and compare; fit checked before the model
    is built."""
    shard_set = open_shard_set(cfg.shards)
    info = read_checkpoint(cfg.ckpt, _oft_options(cfg, shard_set), cfg.base)
    own = shard_set.manifest.dataset
    dataset = info.select(cfg.dataset or (own if own in info.stats else None))
    _check_fits(info, shard_set)
    policy = Policy.from_info(info, cfg.base, cfg.device, dataset)
    # Validation's reading: one unshuffled pass, instructions chosen with the run's seed
    # at epoch 0, so every sample gets the instruction its val L1 was logged with.
    stream = run_stream(policy.run, cfg.split)
    rows: list[Comparison] = []
    sums = np.zeros(3)  # |error| in action units, in normalized units, values counted
    for batch in make_loader(shard_set, stream):
        take = len(batch["keys"])
        if cfg.samples:
            take = min(take, cfg.samples - len(rows))
        actions = batch["actions"][:take].numpy()
        state = batch["proprio"][:take].numpy() if "proprio" in batch else None
        # Images read from a shard are already stored views: no second JPEG round trip.
        normalized = policy.predict_stored(
            batch["images"][:take].numpy(), batch["instructions"][:take], state
        )
        predicted = policy.denormalize(normalized)
        errors = np.abs(predicted - actions), np.abs(normalized - policy.normalize(actions))
        for i in range(take):
            valid = int(batch["valid"][i])
            err, err_normalized = errors[0][i, :valid], errors[1][i, :valid]
            sums += (err.sum(), err_normalized.sum(), err.size)
            rows.append(
                Comparison(
                    key=batch["keys"][i],
                    instruction=batch["instructions"][i],
                    predicted=predicted[i],
                    true=actions[i],
                    valid=valid,
                    l1=float(err.mean()),
                    l1_normalized=float(err_normalized.mean()),
                )
            )
        if cfg.samples and len(rows) >= cfg.samples:
            break
    if not rows:
        raise ShardSetError(f"{shard_set.source}: no readable {cfg.split} samples to predict")
    return PredictReport(cfg.ckpt, dataset, rows, sums[0] / sums[2], sums[1] / sums[2])


def _oft_options(cfg: PredictConfig, shard_set: ShardSet) -> OftOptions | None:
    """For an OFT folder, what it does not record: cameras (default the set's), the set's
    chunk, the normalization; a step-N folder records them and takes none."""
    if not is_oft_folder(cfg.ckpt):
        if cfg.cameras or cfg.normalization:
            raise ConfigError(
                f"{cfg.ckpt}: --cameras and --normalization are for OpenVLA-OFT folders; "
                "a step-N folder records its own"
            )
        return None
    manifest = shard_set.manifest
    cameras = cfg.cameras or tuple(manifest.cameras)
    return OftOptions(cameras=cameras, chunk=manifest.chunk, normalization=cfg.normalization)


def _check_fits(info: CheckpointInfo, shard_set: ShardSet) -> None:
    manifest = shard_set.manifest
    lacking = [c for c in info.run.cameras if c not in manifest.cameras]
    problems = [f"no camera {', '.join(lacking)}"] if lacking else []
    if (manifest.chunk, manifest.action_dim) != (info.model.chunk, info.model.action_dim):
        problems.append(f"chunks of {manifest.chunk} x {manifest.action_dim}-dim actions")
    if problems:
        raise ShardSetError(
            f"{shard_set.source}: {' and '.join(problems)}, but {info.path} was trained on "
            f"cameras {', '.join(info.run.cameras)} with chunks of {info.model.chunk} x "
            f"{info.model.action_dim}-dim actions; predict on a set of the same robot and options"
        )


def print_report(report: PredictReport, console: Console | None = None) -> None:
    if console is None:
        console = Console()
        if not console.is_terminal:
            console.width = PIPED_WIDTH
    table = Table(title=f"{report.ckpt} (stats of {report.dataset!r}): first row, first dims")
    table.add_column("key", no_wrap=True)
    table.add_column("instruction")
    table.add_column("predicted", no_wrap=True)
    table.add_column("true", no_wrap=True)
    table.add_column("L1", justify="right", no_wrap=True)
    table.add_column("L1 norm", justify="right", no_wrap=True)
    for row in report.rows:
        table.add_row(
            row.key,
            row.instruction,
            _first_row(row.predicted),
            _first_row(row.true),
            f"{row.l1:.4f}",
            f"{row.l1_normalized:.4f}",
        )
    console.print(table)
    console.print(
        f"mean L1 over the valid rows of {len(report.rows)} samples: {report.l1:.5f} in action "
        f"units, {report.l1_normalized:.5f} normalized (comparable with the logged val loss)"
    )


def _first_row(chunk: np.ndarray) -> str:
    shown = " ".join(f"{v:+.3f}" for v in chunk[0, :SHOWN_DIMS])
    return shown + (" ..." if chunk.shape[1] > SHOWN_DIMS else "")
