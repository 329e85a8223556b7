"""step-N folders of the shape each OpenVLA-OFT platform takes, written as vla-train writes
them but without training: a tiny model whose LoRA, head, state projector and FiLM maps are
moved off their start, so that every exported tensor carries information."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from stats.compute import DatasetStats, array_stats
from stats.io import stats_to_json
from trainer.model import ModelConfig, build_model
from trainer.model.film import film_parameters
from trainer.model.model_files import save_model
from trainer.run.train_config import TRAIN_CONFIG_FILE, TrainConfig

RANK = 4
DATASET = "robot"


def platform_step_dir(
    out: Path,
    *,
    chunk: int,
    action_dim: int,
    proprio_dim: int = 0,
    film: bool = False,
    cameras: tuple[str, ...] = ("head", "left_wrist"),
    normalization: str = "bounds_q99",
    robot: str | None = None,
    seed: int = 0,
    no_normalize: tuple[int, ...] | None = None,
) -> Path:
    """RUN/step-3 with model_config.json, the adapter, the head (and projector and FiLM maps),
    stats.json (with proprio statistics when the model takes the state; the actions' mask
    leaves `no_normalize` raw, by default the gripper of 7-dim actions as OFT's platforms do)
    and train_config.json."""
    torch.manual_seed(seed)
    config = ModelConfig(base="tiny", action_dim=action_dim, chunk=chunk, lora_rank=RANK,
                         num_images=len(cameras), proprio_dim=proprio_dim, film=film)  # fmt: skip
    model = build_model(config, "cpu")
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:  # peft starts B at zero: LoRA would change nothing
                param.normal_(0, 0.05)
        for param in film_parameters(model.vla.get_base_model()).values():
            param.normal_(0, 0.02)
    step_dir = out / "run" / "step-3"
    save_model(model, step_dir)
    rng = np.random.default_rng(seed)
    actions = rng.normal(size=(64, action_dim))
    proprio = array_stats(rng.normal(size=(64, proprio_dim))) if proprio_dim else None
    if no_normalize is None:
        no_normalize = (action_dim - 1,) if action_dim == 7 else ()
    stats = DatasetStats(array_stats(actions, no_normalize), proprio, 64, 4)
    (step_dir / "stats.json").write_text(stats_to_json(DATASET, stats))
    run = TrainConfig(shards=(str(out / "shards"),), base="tiny", lora_rank=RANK, cameras=cameras,
                      normalization=normalization, proprio=bool(proprio_dim), film=film,
                      robot=robot, run_dir=out / "run")  # fmt: skip
    record = [{"dataset": DATASET, "jpeg_quality": 95, "jpeg_subsampling": "420"}]
    (step_dir / TRAIN_CONFIG_FILE).write_text(run.to_json(mixture=record))
    return step_dir


def frames(cameras: int, seed: int = 0) -> np.ndarray:
    """(1, cameras, 224, 224, 3) uint8 frames with structure, as a shard would hold them."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:224, 0:224]
    base = np.stack([xx, yy, (xx + yy) // 2], axis=-1).astype(np.float64)
    views = [np.clip(base * rng.uniform(0.3, 1.0) + rng.normal(0, 20, base.shape), 0, 255)
             for _ in range(cameras)]  # fmt: skip
    return np.stack(views).astype(np.uint8)[None]


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def reference_crop(image: np.ndarray) -> np.ndarray:
    """tf.image.crop_and_resize on the central 0.9-area box, as its CPU kernel computes it (float32,
    per output pixel), then convert_image_dtype's x * 255.5 truncated; a plain loop."""
    f32 = np.float32
    x = image.astype(f32) * f32(1.0 / 255)
    side = np.sqrt(f32(0.9), dtype=f32)
    y1 = x1 = (f32(1) - side) / f32(2)
    y2 = x2 = y1 + side
    h, w = image.shape[:2]
    hs = (y2 - y1) * f32(h - 1) / f32(223)
    ws = (x2 - x1) * f32(w - 1) / f32(223)
    out = np.zeros((224, 224, 3), np.uint8)
    for y in range(224):
        in_y = y1 * f32(h - 1) + f32(y) * hs
        top, bottom = int(np.floor(in_y)), int(np.ceil(in_y))
        y_lerp = f32(in_y - f32(top))
        for xx in range(224):
            in_x = x1 * f32(w - 1) + f32(xx) * ws
            left, right = int(np.floor(in_x)), int(np.ceil(in_x))
            x_lerp = f32(in_x - f32(left))
            tl, tr = x[top, left], x[top, right]
            bl, br = x[bottom, left], x[bottom, right]
            t = tl + (tr - tl) * x_lerp
            b = bl + (br - bl) * x_lerp
            v = np.clip(t + (b - t) * y_lerp, 0, 1)
            out[y, xx] = (v * f32(255.5)).astype(np.uint8)
    return out
