"""Where a shard set goes: only into an empty folder or over an old set, swapped in atomically.

The new set is built in a hidden folder beside the target and renamed into place at the
end, so an interrupted conversion leaves nothing that looks complete, and the only thing
`--overwrite` may ever delete is a folder whose manifest.json says it is a shard set.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from shards.manifest import is_shard_set


class OutputError(Exception):
    """The output folder cannot be used; the message says why and what to do."""


def check_target(target: Path, overwrite: bool) -> None:
    """Raise OutputError unless `target` is absent, empty, or (with overwrite) a shard set."""
    if target.exists() and not target.is_dir():
        raise OutputError(f"{target}: exists and is not a folder")
    if not target.exists() or not any(target.iterdir()):
        return
    if not is_shard_set(target):
        raise OutputError(
            f"{target}: folder is not empty and holds no shard set; refusing to write there "
            "(--overwrite only ever replaces an earlier vla-shards output)"
        )
    if not overwrite:
        raise OutputError(f"{target}: already holds a shard set; pass --overwrite to replace it")


def staging_dir(target: Path) -> Path:
    """A fresh hidden folder beside `target`, on its filesystem so the final rename is atomic."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.partial-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    return staging


def publish(staging: Path, target: Path, overwrite: bool) -> None:
    """Move the finished `staging` folder to `target`, replacing an old set only if allowed."""
    check_target(target, overwrite)  # the target may have changed while we converted
    old = None
    if target.exists():
        if any(target.iterdir()):
            old = target.parent / f".{target.name}.old-{os.getpid()}"
            target.rename(old)
        else:
            target.rmdir()
    staging.rename(target)
    if old is not None:
        shutil.rmtree(old)


def discard(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)
