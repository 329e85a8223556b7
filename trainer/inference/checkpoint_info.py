"""A checkpoint folder read for use: a step-N/ folder (or an OpenVLA-OFT one) checked whole,
described without building the model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shards.format import STATS_FILE, JpegStorage
from stats.compute import DatasetStats
from stats.io import read_stats
from trainer.model import ModelConfig
from trainer.model.model_files import ADAPTER_FILE, HEAD_FILE, MODEL_CONFIG_FILE, read_model_config
from trainer.model.oft_files import OftCheckpoint, OftOptions, is_oft_folder, read_oft
from trainer.run.checkpoint import CheckpointError, checkpoints, load_config, load_jpeg_storage
from trainer.run.checksums import check_checkpoint
from trainer.run.train_config import TRAIN_CONFIG_FILE, TrainConfig

# OFT's evaluation JPEG-encodes frames with tf.image.encode_jpeg's defaults: quality 95, 4:2:0.
OFT_JPEG = JpegStorage(95, "420")
_REQUIRED = (MODEL_CONFIG_FILE, ADAPTER_FILE, HEAD_FILE, STATS_FILE, TRAIN_CONFIG_FILE)


@dataclass(frozen=True)
class CheckpointInfo:
    """What a step-N/ folder says about its policy, read without building the model."""

    path: Path
    run: TrainConfig  # cameras, image_aug, normalization and seed of the run
    model: ModelConfig
    stats: dict[str, DatasetStats]  # one entry per dataset trained on
    oft: OftCheckpoint | None = None  # the tensors, when the folder is OpenVLA-OFT's
    oft_dtype: str | None = None  # the dtype asked for an OFT folder's base, if any
    jpeg: dict[str, JpegStorage | None] | None = None  # per dataset, as its images were stored

    def select(self, dataset: str | None = None) -> str:
        """The stats entry to denormalize with: `dataset`, or the only one there is."""
        names = sorted(self.stats)
        if dataset is None and len(names) == 1:
            return names[0]
        if dataset is None:
            raise CheckpointError(
                f"{self.path / STATS_FILE} holds the statistics of several datasets "
                f"({', '.join(names)}); choose one (dataset= or --dataset)"
            )
        if dataset not in self.stats:
            raise CheckpointError(
                f"{self.path / STATS_FILE} has no statistics for dataset {dataset!r}; "
                f"it has {', '.join(names)}"
            )
        return dataset


def read_checkpoint(
    ckpt: Path, oft: OftOptions | None = None, base: str | None = None
) -> CheckpointInfo:
    """Check a step-N/ (or OpenVLA-OFT) folder is complete and consistent; errors name the
    folder and the fix. `oft` says what an OFT folder does not record; `base` its base."""
    ckpt = Path(ckpt)
    if not ckpt.is_dir():
        raise CheckpointError(f"{ckpt}: no such checkpoint folder; pass RUN_DIR/step-N")
    if is_oft_folder(ckpt):
        return oft_checkpoint_info(read_oft(ckpt), oft or OftOptions(), base)
    if oft is not None and oft != OftOptions():
        raise CheckpointError(
            f"{ckpt}: cameras, chunk and normalization are read from the checkpoint; "
            "those options are for OpenVLA-OFT folders only"
        )
    missing = [name for name in _REQUIRED if not (ckpt / name).is_file()]
    if missing:
        # A run folder instead of one of its step-N folders is the likely slip.
        saved = checkpoints(ckpt)
        fix = f"one of its step-N folders, e.g. {saved[-1][1]}" if saved else "a whole step-N"
        raise CheckpointError(f"{ckpt}: missing {', '.join(missing)}; pass {fix}")
    check_checkpoint(ckpt)  # a damaged file is named here, before anything reads it
    stats = read_stats(ckpt / STATS_FILE)
    run, model = load_config(ckpt), read_model_config(ckpt)
    info = CheckpointInfo(ckpt, run, model, stats, jpeg=load_jpeg_storage(ckpt))
    wrong = [n for n, s in info.stats.items() if len(s.action.q01) != info.model.action_dim]
    if wrong or len(info.run.cameras) != info.model.num_images:
        raise CheckpointError(
            f"{ckpt}: {STATS_FILE}, {MODEL_CONFIG_FILE} and {TRAIN_CONFIG_FILE} disagree on the "
            "action dims or cameras; the folder was not written by one run"
        )
    return info


def oft_checkpoint_info(
    oft: OftCheckpoint, options: OftOptions, base: str | None
) -> CheckpointInfo:
    """An OFT folder described as one of our runs: base, LoRA rank and action width from its
    files, cameras, chunk and normalization from `options` (or OFT's platform defaults)."""
    options = options.resolved(oft)
    if oft.merged_only and base is not None and Path(base) != oft.path:
        raise CheckpointError(
            f"{oft.path}: a merged-only OpenVLA-OFT folder (no lora_adapter/): its own merged "
            "weights are the base; leave out --base"
        )
    base = oft.base if oft.merged_only else base or oft.base or "openvla/openvla-7b"
    run = TrainConfig(
        shards=(str(oft.path),),
        base=base,
        lora_rank=oft.lora_rank,
        cameras=options.cameras,
        image_aug=options.image_aug,
        normalization=options.normalization,
        episode_tail="drop",  # OFT's runs never saw padded chunks
        proprio=oft.proprio is not None,
        film=oft.vision is not None,
        robot=options.robot,
    )
    model = ModelConfig(
        base=base,
        action_dim=oft.action_dim,
        chunk=options.chunk,
        num_images=len(options.cameras),
        lora_rank=oft.lora_rank,
        dtype=options.dtype or "float32",
        proprio_dim=int(oft.proprio["fc1.weight"].shape[1]) if oft.proprio else 0,
        film=oft.vision is not None,
    )
    wrong = [n for n, s in oft.stats.items() if len(s.action.q01) != oft.action_dim]
    if wrong:
        raise CheckpointError(
            f"{oft.path}: dataset_statistics.json has other action dims than the head "
            f"({oft.action_dim}) for {', '.join(wrong)}"
        )
    jpeg = dict.fromkeys(oft.stats, OFT_JPEG)
    return CheckpointInfo(oft.path, run, model, oft.stats, oft, options.dtype, jpeg)
