"""The trained policy on a robot: a step-N/ checkpoint -> action chunks in the robot's units."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from shards.format import STATS_FILE, JpegStorage, decode_jpeg, encode_jpeg, resize_square
from stats.normalize import bounds, denormalize, normalize
from trainer.data.augment import pixel_values
from trainer.inference.checkpoint_info import CheckpointInfo, read_checkpoint
from trainer.inference.oft_frames import oft_center_crop, oft_resize
from trainer.model import ActionModel, build_model, load_model
from trainer.model.model_config import IMAGE_SIZE
from trainer.model.oft_files import OftOptions, load_oft_weights
from trainer.run.checkpoint import CheckpointError
from trainer.run.step import autocast
from trainer.run.train_config import ConfigError

# One sample's cameras: by name (extra cameras are ignored) or in the trained order.
CameraImages = Mapping[str, np.ndarray] | Sequence[np.ndarray]
log = logging.getLogger(__name__)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is visible")
    return torch.device(device)


class Policy:
    """Camera images + instruction -> (chunk, D) actions, denormalized with the run's stats."""

    def __init__(self, net: ActionModel, info: CheckpointInfo, dataset: str, device: torch.device):
        self.net = net.eval()
        self.run = info.run
        self.dataset = dataset
        self.bounds = bounds(info.stats[dataset].action, info.run.normalization)
        self.proprio_bounds = None
        if net.config.proprio_dim:
            state_stats = info.stats[dataset].proprio
            if state_stats is None:
                raise CheckpointError(
                    f"{info.path}: the policy takes the robot state but {STATS_FILE} has no "
                    f"proprio statistics for {dataset!r}"
                )
            self.proprio_bounds = bounds(state_stats, info.run.normalization)
        self.device = device
        # A policy imported from OpenVLA-OFT sees frames as OFT's evaluation prepares them;
        # ours as its training set stored them (docs/OFT.md, "Inference image path").
        self.oft_frames = info.oft is not None
        self.jpeg = (info.jpeg or {}).get(dataset)
        if self.jpeg is None:
            log.warning(
                "%s records no JPEG quality for %r (saved before it was recorded, or a set "
                "made without one): camera frames are resized but skip the JPEG round trip "
                "the training images went through", info.path, dataset,
            )  # fmt: skip

    @classmethod
    def load(
        cls,
        ckpt: Path,
        base: str | None = None,
        device: str = "auto",
        dataset: str | None = None,
        oft: OftOptions | None = None,
    ) -> Policy:
        """Base (the trained one, or `base`) + LoRA + head; stats of `dataset` (or the only one).

        `ckpt` may be an OpenVLA-OFT checkpoint folder; `oft` then gives its cameras (and
        chunk and normalization when they are not its platform's).
        """
        return cls.from_info(read_checkpoint(ckpt, oft, base), base, device, dataset)

    @classmethod
    def from_info(
        cls, info: CheckpointInfo, base: str | None, device: str, dataset: str | None
    ) -> Policy:
        """Build and load the policy read_checkpoint described."""
        name = info.select(dataset)
        where = resolve_device(device)
        if info.oft is None:
            return cls(load_model(info.path, base, where), info, name, where)
        config = info.model
        if where.type == "cuda" and info.oft_dtype is None:
            config = replace(config, dtype="bfloat16")  # as OFT runs its base
        net = build_model(config, where)
        load_oft_weights(net, info.oft)
        return cls(net, info, name, where)

    @property
    def cameras(self) -> tuple[str, ...]:
        return self.run.cameras

    def predict(
        self, images: CameraImages, instruction: str, proprio: np.ndarray | None = None
    ) -> np.ndarray:
        """One sample's RGB uint8 (H, W, 3) images -> (chunk, D) float32 actions.

        `proprio`: the robot's state in its own units, for a policy trained with it.
        """
        state = None if proprio is None else np.asarray(proprio, dtype=np.float32)[None]
        return self.predict_batch([images], [instruction], state)[0]

    def predict_batch(
        self,
        images: Sequence[CameraImages] | np.ndarray,
        instructions: Sequence[str],
        proprio: np.ndarray | None = None,
    ) -> np.ndarray:
        """Per-sample images (or a (B, N, H, W, 3) uint8 array) -> (B, chunk, D) float32."""
        return self.denormalize(self.predict_normalized(images, instructions, proprio))

    def predict_normalized(
        self,
        images: Sequence[CameraImages] | np.ndarray,
        instructions: Sequence[str],
        proprio: np.ndarray | None = None,
    ) -> np.ndarray:
        """The network's output, in the normalized units the training loss is computed in."""
        if len(images) != len(instructions):
            raise ValueError(f"{len(images)} image sets for {len(instructions)} instructions")
        return self.predict_stored(self.stored_views(images), instructions, proprio)

    def stored_views(self, images: Sequence[CameraImages] | np.ndarray) -> np.ndarray:
        """Camera frames -> (B, N, 224, 224, 3) uint8 exactly as a shard of the run's set would
        hold them: the converter's resize, then the JPEG round trip at the set's quality."""
        return np.stack([np.stack(self._ordered(sample)) for sample in images])

    def model_input(self, stored: np.ndarray) -> torch.Tensor:
        """Stored views -> pixel_values: the validation view (the centre crop when the run
        trained with image_aug), computed outside autocast exactly as the trainer does; for
        an OFT policy OFT's own crop, rounded to uint8 as its evaluation does."""
        if self.oft_frames:
            if self.run.image_aug:
                stored = np.stack([np.stack([oft_center_crop(v) for v in s]) for s in stored])
            return pixel_values(torch.from_numpy(stored).to(self.device), image_aug=False)
        return pixel_values(torch.from_numpy(stored).to(self.device), self.run.image_aug)

    @torch.no_grad()
    def predict_stored(
        self,
        stored: np.ndarray,
        instructions: Sequence[str],
        proprio: np.ndarray | None = None,
    ) -> np.ndarray:
        """Normalized output for images already as a shard holds them (e.g. read from one)."""
        state = self._state(proprio, len(stored))
        tokens = {k: v.to(self.device) for k, v in self.net.tokenize(list(instructions)).items()}
        with autocast(self.device, self.run.precision):
            out = self.net(self.model_input(stored), **tokens, proprio=state)
        return out.float().cpu().numpy()

    def _state(self, proprio: np.ndarray | None, samples: int) -> torch.Tensor | None:
        """The robot state, normalized with the run's statistics, for a policy trained with it."""
        dims = self.net.config.proprio_dim
        if not dims:
            if proprio is not None:
                raise ValueError("this policy was trained without the robot state; omit proprio")
            return None
        if proprio is None:
            raise ValueError(
                f"this policy was trained with the robot state: pass proprio, its {dims} "
                "values in the robot's units"
            )
        state = np.asarray(proprio, dtype=np.float32)
        if state.shape != (samples, dims):
            raise ValueError(f"proprio has shape {state.shape}; the policy takes {dims} values")
        return torch.from_numpy(normalize(state, self.proprio_bounds)).to(self.device)

    def normalize(self, actions: np.ndarray) -> np.ndarray:
        return normalize(np.asarray(actions, dtype=np.float32), self.bounds)

    def denormalize(self, normalized: np.ndarray) -> np.ndarray:
        """Back to the robot's units where the stats mask is set; other dims pass through."""
        return denormalize(normalized, self.bounds).astype(np.float32)

    def _ordered(self, images: CameraImages) -> list[np.ndarray]:
        if isinstance(images, Mapping):
            missing = [c for c in self.cameras if c not in images]
            if missing:
                raise ValueError(
                    f"no image for camera(s) {', '.join(missing)}; "
                    f"the policy takes {', '.join(self.cameras)}"
                )
            images = [images[c] for c in self.cameras]
        elif len(images) != len(self.cameras):
            raise ValueError(
                f"{len(images)} images for one sample; the policy takes {len(self.cameras)} "
                f"({', '.join(self.cameras)}, in that order)"
            )
        if self.oft_frames:
            return [oft_resize(_rgb(image)) for image in images]
        return [stored_view(_rgb(image), IMAGE_SIZE, self.jpeg) for image in images]


def stored_view(image: np.ndarray, size: int, jpeg: JpegStorage | None) -> np.ndarray:
    """What the converter stores for a frame, as the reader decodes it (shards.format's own
    resize, encoder and decoder, so the bytes and pixels are the same)."""
    resized = resize_square(image, size)
    if jpeg is None:
        return resized
    return decode_jpeg(encode_jpeg(resized, jpeg))


def _rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"images must be RGB uint8 (H, W, 3), got {image.dtype} {image.shape}")
    return image
