"""What a run finds in its folder when it starts: a killed save's leftovers, another run's
metrics, and which step-N to resume from when the newest is damaged."""

from __future__ import annotations

import logging
import pickle
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from common.errors import UserError
from trainer.run.checksums import check_checkpoint

log = logging.getLogger(__name__)
_STALE_TEMP = re.compile(r"\.step-\d+\.tmp")


class RunFolderError(UserError):
    """The run folder holds something a new run or a resume must not go on with."""


def remove_stale_temps(run_dir: Path) -> list[str]:
    """Remove `.step-N.tmp/` folders a killed save left; called with the run's lock held, so
    no live save owns them. Returns a line per folder removed."""
    if not run_dir.is_dir():
        return []
    lines = []
    for path in sorted(run_dir.iterdir()):
        if _STALE_TEMP.fullmatch(path.name) and path.is_dir():
            shutil.rmtree(path)
            lines.append(f"removed {path}: a half-written checkpoint of a save that was stopped")
    return lines


def refuse_another_run(run_dir: Path, metrics_file: str) -> None:
    """A fresh run in a folder whose metrics another run wrote would mix their rows."""
    if (run_dir / metrics_file).exists():
        raise RunFolderError(
            f"{run_dir} holds {metrics_file} of another run, which saved no checkpoint to "
            f"resume; choose another --run-dir, or delete {run_dir / metrics_file} to start over"
        )


def read_state(path: Path) -> dict[str, Any]:
    """trainer_state.pt: tensors and plain containers only, nothing unpickled as code; a
    damaged or truncated file is a RunFolderError naming it."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise RunFolderError(f"{path}: missing") from None
    except (RuntimeError, EOFError, pickle.UnpicklingError, ValueError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RunFolderError(f"{path}: unreadable ({reason})") from None


def usable_checkpoint(
    run_dir: Path, found: list[tuple[int, Path]], state_file: str
) -> tuple[Path, dict[str, Any]]:
    """The newest of `found` (step, folder), oldest first, whose checksums hold and whose
    state reads; each one skipped is a warning saying why."""
    skipped = []
    for _, ckpt in reversed(found):
        try:
            check_checkpoint(ckpt)
            state = read_state(ckpt / state_file)
        except UserError as exc:
            log.warning("skipping %s: %s", ckpt.name, exc)
            skipped.append(f"{ckpt.name} ({exc})")
            continue
        if skipped:
            log.warning("resuming from %s, the newest complete checkpoint", ckpt)
        return ckpt, state
    raise RunFolderError(
        f"{run_dir}: no step-N checkpoint to resume from"
        + (f"; every one is damaged: {'; '.join(skipped)}" if skipped else "")
    )
