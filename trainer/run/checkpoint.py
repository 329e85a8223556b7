"""RUN_DIR/step-N/ checkpoints: policy, stats, options and the state an exact resume needs."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.errors import UserError
from common.files import read_json, read_text
from shards.format import STATS_FILE, JpegStorage, jpeg_storage
from shards.mixture import Mixture
from shards.source import ShardSet
from trainer.model import ActionModel, save_model
from trainer.run.disk_space import folder_bytes
from trainer.run.folder_write import rename_into_place, write_folder
from trainer.run.metrics import METRICS_FILE
from trainer.run.run_folder import read_state, refuse_another_run, usable_checkpoint
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
    """The newest step-N whose files are whole (checksums, trainer state); see resumable."""
    return resumable(run_dir)[0]


def resumable(run_dir: Path) -> tuple[Path, dict[str, Any]]:
    """The newest step-N whose checksums hold and whose state reads, and that state; each
    newer one skipped is a warning naming the damaged file."""
    return usable_checkpoint(run_dir, checkpoints(run_dir), STATE_FILE)


def resume_point(
    run_dir: Path,
    resume: bool,
    mixture: Mixture,
    world_size: int,
    allow_new_data: bool,
    ckpt: Path | None = None,
) -> tuple[Path | None, dict[str, Any] | None]:
    """The run's newest whole step-N (`ckpt` when the caller chose it) and its state when
    resuming, checked against this data; a new run refuses a folder that already holds
    checkpoints, or the metrics of another run."""
    if not resume:
        if checkpoints(run_dir):
            raise CheckpointError(
                f"{run_dir} already holds checkpoints: continue it with --resume "
                f"{run_dir}, or choose another --run-dir"
            )
        refuse_another_run(run_dir, METRICS_FILE)
        return None, None
    ckpt, state = (ckpt, load_state(ckpt)) if ckpt else resumable(run_dir)
    check_compatible(state, ckpt, mixture, world_size, allow_new_data)
    return ckpt, state


def mixture_signature(mixture: Mixture) -> list[dict[str, Any]]:
    """What the trained head, the normalization and the data order depend on, per set."""
    return [
        {
            "dataset": s.manifest.dataset,
            "action_dim": s.manifest.action_dim,
            "chunk": s.manifest.chunk,
            "weight": weight,
            "digest": s.manifest.digest(),  # the shards: a re-made set of one name differs
            "stats_digest": stats_digest(s),  # the normalization the head learned in
        }
        for s, weight in zip(mixture.sets, mixture.weights, strict=True)
    ]


def stats_digest(shard_set: ShardSet) -> str:
    """sha256 of the set's own stats.json entry, key order and layout aside."""
    entry = json.loads(shard_set.stats_text)[shard_set.manifest.dataset]
    return hashlib.sha256(json.dumps(entry, sort_keys=True).encode()).hexdigest()


def save_checkpoint(
    run_dir: Path,
    step: int,
    model: ActionModel,
    cfg: TrainConfig,
    mixture: Mixture,
    state: dict[str, Any],
) -> Path:
    """Write step-N/ under a temporary name and rename it: a crash never leaves half a step-N.

    The space it needs is checked first; a failure to write leaves the earlier checkpoints as
    they were and no temporary folder (trainer.run.folder_write).
    """
    final = run_dir / f"step-{step}"
    tmp = run_dir / f".step-{step}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)  # the run holds the folder's lock: no one else's
    state_bytes = io.BytesIO()  # torch's writer reports a full disk as a bare RuntimeError
    torch.save(state, state_bytes)

    def write(folder: Path) -> None:
        save_model(model, folder)
        (folder / STATS_FILE).write_text(mixture.stats_text())
        (folder / TRAIN_CONFIG_FILE).write_text(cfg.to_json(mixture=image_records(mixture)))
        (folder / STATE_FILE).write_bytes(state_bytes.getvalue())

    needed = checkpoint_bytes(run_dir, model, state_bytes.getbuffer().nbytes)
    write_folder(tmp, write, needed, final.name)
    # Re-saving a step after a resume from an older one replaces it.
    rename_into_place(tmp, final, True, needed, final.name)
    for _, old in checkpoints(run_dir)[: -cfg.keep]:
        shutil.rmtree(old)
    return final


def checkpoint_bytes(run_dir: Path, model: ActionModel, state_bytes: int) -> int:
    """About the size of the next step-N: the last one's, else the trainer state plus the
    trainable weights (LoRA, head) written beside it."""
    found = checkpoints(run_dir)
    if found:
        return folder_bytes(found[-1][1])
    weights = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return state_bytes + weights


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
    data = read_json(ckpt / TRAIN_CONFIG_FILE, CheckpointError, "pass a whole step-N folder")
    return {r["dataset"]: jpeg_storage(r) for r in data.get("mixture", [])}


def load_config(ckpt: Path) -> TrainConfig:
    path = ckpt / TRAIN_CONFIG_FILE
    return TrainConfig.from_json(read_text(path, CheckpointError), str(path))


def load_state(ckpt: Path) -> dict[str, Any]:
    return read_state(ckpt / STATE_FILE)


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
        _check_same_data(old, new, shard_set, ckpt, allow_new_data)
    if state["world_size"] != world_size:
        raise CheckpointError(
            f"{ckpt} was trained on {state['world_size']} process(es), this is {world_size}; "
            "the data order is exact only with the same number (and the same --workers)"
        )


# Recorded per set; the shards and statistics digests checked apart from the rest.
_DIGESTS = {
    "digest": ("shards", "shard sets"),
    "stats_digest": ("statistics (stats.json)", "sets' stats.json"),
}


def _check_same_data(
    old: dict[str, Any], new: dict[str, Any], shard_set: ShardSet, ckpt: Path, allow_new: bool
) -> None:
    """The set's shards and stats.json are those the run trained on, unless `allow_new`."""
    for key, (what, unchecked) in _DIGESTS.items():
        if key not in old:  # saved before this digest was recorded
            log.warning(
                "%s records no digest of its %s: cannot check that %s holds the data it was "
                "trained on", ckpt, unchecked, shard_set.source,
            )  # fmt: skip
        elif old[key] != new[key] and allow_new:
            log.warning(
                "continuing on new data: %s holds other %s than the run's dataset %r "
                "(digest %.12s, was %.12s)", shard_set.source, what, old["dataset"], new[key],
                old[key],
            )  # fmt: skip
        elif old[key] != new[key]:
            raise CheckpointError(
                f"{shard_set.source} holds other {what} than the dataset {old['dataset']!r} "
                f"that {ckpt} was trained on (digest {new[key]:.12}, was {old[key]:.12}); "
                "resume with the run's own set, or pass --allow-new-data to go on with this "
                "one on purpose"
            )


def _without_digest(signature: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in s.items() if k not in _DIGESTS} for s in signature]


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
