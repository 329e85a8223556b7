"""RUN_DIR/step-N/ checkpoints: policy, stats, options and the state an exact resume needs."""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.errors import UserError
from common.files import read_text
from shards.format import STATS_FILE, JpegStorage, jpeg_storage
from shards.mixture import Mixture
from trainer.model import ActionModel, save_model
from trainer.run.train_config import TRAIN_CONFIG_FILE, TrainConfig

STATE_FILE = "trainer_state.pt"
log = logging.getLogger(__name__)
_STEP_DIR = re.compile(r"step-(\d+)")


class CheckpointError(UserError):
    """A run folder that can't be resumed (none saved, or made for other data or ranks)."""


def checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Complete step-N folders, oldest first (half-written ones are still dot-named temps)."""
    if not run_dir.is_dir():
        return []
    found = [
        (int(m.group(1)), p)
        for p in run_dir.iterdir()
        if (m := _STEP_DIR.fullmatch(p.name)) and (p / STATE_FILE).is_file()
    ]
    return sorted(found)


def latest_checkpoint(run_dir: Path) -> Path:
    found = checkpoints(run_dir)
    if not found:
        raise CheckpointError(f"{run_dir}: no step-N checkpoint to resume from")
    return found[-1][1]


def resume_point(
    run_dir: Path, resume: bool, mixture: Mixture, world_size: int, allow_new_data: bool
) -> tuple[Path | None, dict[str, Any] | None]:
    """The run's latest step-N and its state when resuming, checked against this data; a new
    run refuses a folder that already holds checkpoints."""
    if not resume:
        if checkpoints(run_dir):
            raise CheckpointError(
                f"{run_dir} already holds checkpoints: continue it with --resume "
                f"{run_dir}, or choose another --run-dir"
            )
        return None, None
    ckpt = latest_checkpoint(run_dir)
    state = load_state(ckpt)
    check_compatible(state, ckpt, mixture, world_size, allow_new_data)
    return ckpt, state


def mixture_signature(mixture: Mixture) -> list[dict[str, Any]]:
    """What the trained head, the normalization and the data order depend on, per set."""
    return [
        {
            "dataset": m.dataset,
            "action_dim": m.action_dim,
            "chunk": m.chunk,
            "weight": weight,
            "digest": m.digest(),  # the shards themselves: a re-made set of one name differs
        }
        for m, weight in zip((s.manifest for s in mixture.sets), mixture.weights, strict=True)
    ]


def save_checkpoint(
    run_dir: Path,
    step: int,
    model: ActionModel,
    cfg: TrainConfig,
    mixture: Mixture,
    state: dict[str, Any],
) -> Path:
    """Write step-N/ under a temporary name and rename it: a crash never leaves half a step-N."""
    final = run_dir / f"step-{step}"
    tmp = run_dir / f".step-{step}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    save_model(model, tmp)
    (tmp / STATS_FILE).write_text(mixture.stats_text())
    (tmp / TRAIN_CONFIG_FILE).write_text(cfg.to_json(mixture=image_records(mixture)))
    torch.save(state, tmp / STATE_FILE)
    if final.exists():  # re-saving a step after a resume from an older one
        shutil.rmtree(final)
    os.replace(tmp, final)
    for _, old in checkpoints(run_dir)[: -cfg.keep]:
        shutil.rmtree(old)
    return final


def image_records(mixture: Mixture) -> list[dict[str, Any]]:
    """The mixture record, each set with the JPEG encoding its images were stored with: a
    deployed policy puts camera frames through the same round trip (None: not recorded)."""
    records = []
    for record, s in zip(mixture.record(), mixture.sets, strict=True):
        jpeg = jpeg_storage(s.manifest.options)
        stored = {"jpeg_quality": None} if jpeg is None else {
            "jpeg_quality": jpeg.quality, "jpeg_subsampling": jpeg.subsampling}  # fmt: skip
        records.append({**record, **stored})
    return records


def load_jpeg_storage(ckpt: Path) -> dict[str, JpegStorage | None]:
    """Dataset -> how its stored images were JPEG-encoded, from train_config.json."""
    data = json.loads((ckpt / TRAIN_CONFIG_FILE).read_text())
    return {r["dataset"]: jpeg_storage(r) for r in data.get("mixture", [])}


def load_config(ckpt: Path) -> TrainConfig:
    path = ckpt / TRAIN_CONFIG_FILE
    return TrainConfig.from_json(read_text(path, CheckpointError), str(path))


def load_state(ckpt: Path) -> dict[str, Any]:
    # weights_only: only tensors and plain containers, nothing unpickled as code.
    return torch.load(ckpt / STATE_FILE, map_location="cpu", weights_only=True)


def check_compatible(
    state: dict[str, Any],
    ckpt: Path,
    mixture: Mixture,
    world_size: int,
    allow_new_data: bool = False,
) -> None:
    """Refuse to resume on other sets, weights or process counts than the run was saved with.

    A set of the run's name whose shards differ is refused too, unless `allow_new_data`.
    """
    # Checkpoints from before mixing saved one set's signature under "set".
    saved = state["sets"] if "sets" in state else [{**state["set"], "weight": 1.0}]
    now = mixture_signature(mixture)
    if _without_digest(saved) != _without_digest(now):
        raise CheckpointError(
            f"{ckpt} was trained on {_describe(saved)}, but --shards gives {_describe(now)}; "
            "resume with the run's own shard sets and weights, in the same order"
        )
    for old, new, shard_set in zip(saved, now, mixture.sets, strict=True):
        if "digest" not in old:  # saved before digests were recorded
            log.warning(
                "%s records no digest of its shard sets: cannot check that %s holds the data "
                "it was trained on", ckpt, shard_set.source,
            )  # fmt: skip
        elif old["digest"] != new["digest"] and allow_new_data:
            log.warning(
                "continuing on new data: %s holds other shards than the run's dataset %r "
                "(digest %.12s, was %.12s)", shard_set.source, old["dataset"], new["digest"],
                old["digest"],
            )  # fmt: skip
        elif old["digest"] != new["digest"]:
            raise CheckpointError(
                f"{shard_set.source} holds other shards than the dataset {old['dataset']!r} "
                f"that {ckpt} was trained on (digest {new['digest']:.12}, was "
                f"{old['digest']:.12}); resume with the run's own set, or pass "
                "--allow-new-data to go on with this one on purpose"
            )
    if state["world_size"] != world_size:
        raise CheckpointError(
            f"{ckpt} was trained on {state['world_size']} process(es), this is {world_size}; "
            "the data order is exact only with the same number (and the same --workers)"
        )


def _without_digest(signature: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in s.items() if k != "digest"} for s in signature]


def _describe(signature: list[dict[str, Any]]) -> str:
    return " + ".join(
        f"{s['dataset']!r} ({s['action_dim']}-dim actions, chunks of {s['chunk']}, "
        f"weight {s['weight']:g})"
        for s in signature
    )


def capture_rng(aug: torch.Generator) -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (kind, keys.tolist(), pos, has_gauss, cached),
        "torch": torch.get_rng_state(),
        "aug": aug.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], aug: torch.Generator) -> None:
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    aug.set_state(state["aug"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
