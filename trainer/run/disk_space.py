"""Free space checked before a checkpoint or export is written, and the line a full disk gives."""

from __future__ import annotations

import shutil
from pathlib import Path

from common.errors import UserError

# Besides the estimate: filesystem blocks, directory entries, metrics lines written meanwhile.
SLACK_BYTES = 64 * 1024


class WriteError(UserError):
    """A checkpoint or an export could not be written: no room, or the OS refused."""


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).iterdir() if p.is_file())


def free_bytes(path: Path) -> int:
    """Free bytes on the filesystem that holds `path` (or its nearest existing parent)."""
    path = Path(path).absolute()
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


def megabytes(count: int) -> str:
    return f"{count / 1e6:,.1f} MB" if count >= 100_000 else f"{count / 1e3:,.0f} kB"


def check_free_space(where: Path, needed: int, what: str) -> None:
    """Refuse before writing `what` when `where` has less than `needed` bytes free."""
    free = free_bytes(where)
    if free < needed + SLACK_BYTES:
        raise WriteError(
            f"{where}: not enough space to write {what}: it needs about {megabytes(needed)}, "
            f"{megabytes(free)} free"
        )


def write_error(exc: OSError, where: Path, needed: int, what: str) -> WriteError:
    """The one line an OSError while writing `what` becomes: the path, the reason, the size."""
    path = exc.filename or where
    return WriteError(
        f"{path}: {exc.strerror or exc} while writing {what} (about {megabytes(needed)} "
        f"needed, {megabytes(free_bytes(where))} free)"
    )
