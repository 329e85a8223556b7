"""Where a shard set goes: only into an empty folder or over an old set, swapped in atomically.

The new set is built in a hidden folder beside the target and renamed into place at the
end, so an interrupted conversion leaves nothing that looks complete. `--overwrite` may only
ever delete the files an old set's manifest lists as its own (shards, stats.json,
manifest.json): a folder holding anything else, or holding an input of the run, is refused
before anything is written. A symlinked target stands for the folder it points to.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from common.errors import UserError
from shards.format import MANIFEST_FILE, STATS_FILE
from shards.manifest import ManifestError, is_shard_set, read_manifest

log = logging.getLogger(__name__)

_LISTED = 3  # foreign entries named in a refusal; the rest are counted


class OutputError(UserError):
    """The output folder cannot be used; the message says why and what to do."""


def check_target(target: Path, overwrite: bool, inputs: Iterable[Path] = ()) -> Path:
    """The real folder to write to (symlinks resolved); OutputError unless writing is safe.

    Safe means absent, empty, or (with `overwrite`) a shard set holding only its own files;
    and none of `inputs` (episode folders, merge parts) lies inside it.
    """
    real = _real_folder(target)
    for path in inputs:
        source = Path(path).resolve()
        if source == real or real in source.parents:
            raise OutputError(
                f"{path}: an input lies inside the output folder {target}, which the new set "
                "would replace; move the input out or write the set elsewhere"
            )
    if not real.exists() or not any(real.iterdir()):
        return real
    if not is_shard_set(real):
        raise OutputError(
            f"{target}: folder is not empty and holds no shard set; refusing to write there "
            "(--overwrite only ever replaces an earlier vla-shards output)"
        )
    if not overwrite:
        raise OutputError(f"{target}: already holds a shard set; pass --overwrite to replace it")
    foreign = _foreign_entries(real)
    if foreign:
        more = f" and {len(foreign) - _LISTED} more" if len(foreign) > _LISTED else ""
        raise OutputError(
            f"{target}: {', '.join(foreign[:_LISTED])}{more} not part of the shard set its "
            "manifest lists; --overwrite only replaces the set's own files, so move these "
            "out first"
        )
    return real


def _real_folder(target: Path) -> Path:
    real = target.resolve()
    if target.is_symlink() and not real.exists():
        raise OutputError(
            f"{target}: a symbolic link to {real}, which does not exist; create that folder "
            "or give another output"
        )
    if real.exists() and not real.is_dir():
        raise OutputError(f"{target}: exists and is not a folder")
    return real


def _own_files(folder: Path) -> set[str]:
    """The names a shard set's manifest lists as its own: its shards, stats and manifest."""
    try:
        manifest = read_manifest(folder)
    except ManifestError as exc:
        raise OutputError(f"{exc}; without it the set's own files are unknown") from None
    shards = {s.name for entries in manifest.splits.values() for s in entries}
    return {MANIFEST_FILE, STATS_FILE} | shards


def _foreign_entries(folder: Path) -> list[str]:
    own = _own_files(folder)
    foreign = []
    for path in sorted(folder.iterdir()):
        # A folder never belongs to a set, even under a listed name; a symlink is only unlinked.
        if path.name not in own or not (path.is_symlink() or path.is_file()):
            foreign.append(path.name + ("/" if path.is_dir() else ""))
    return foreign


def staging_dir(target: Path) -> Path:
    """A fresh hidden folder beside `target`, on its filesystem so the final rename is atomic."""
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(target)
    staging = target.parent / f".{target.name}.partial-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    return staging


def _remove_stale_partials(target: Path) -> None:
    """Delete staging folders beside `target` whose conversion no longer runs (killed ones).

    Only `.NAME.partial-PID` folders go, and only when PID is not a running process: a
    concurrent conversion keeps its own. Old sets set aside (`.NAME.old-PID`) are the
    user's data and are never removed here.
    """
    prefix = f".{target.name}.partial-"
    for path in sorted(target.parent.glob(f"{prefix}*")):
        pid = path.name.removeprefix(prefix)
        if not pid.isdigit() or _running(int(pid)) or path.is_symlink() or not path.is_dir():
            continue
        shutil.rmtree(path)
        log.warning("removed %s, left by a conversion that no longer runs", path)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def publish(staging: Path, target: Path, overwrite: bool) -> None:
    """Move the finished `staging` folder to `target` (the real folder check_target returned).

    An old set is renamed aside first, so the target always holds one complete set, and then
    only its own files are deleted.
    """
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
        _remove_old_set(old, target)


def _remove_old_set(old: Path, target: Path) -> None:
    own = _own_files(old)
    for path in old.iterdir():
        if path.name in own and (path.is_symlink() or path.is_file()):
            path.unlink()
    try:
        old.rmdir()
    except OSError:
        # Only files that appeared after the last check can be left; they are the user's.
        raise OutputError(
            f"{target}: written, but files added to the old set's folder during the "
            f"conversion were kept in {old}"
        ) from None


def discard(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)
