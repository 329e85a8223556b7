"""A folder written whole or not at all: space checked first, checksums last, OSErrors one line."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from safetensors import SafetensorError

from trainer.run.checksums import write_checksums
from trainer.run.disk_space import check_free_space, write_error


def write_folder(
    tmp: Path, write: Callable[[Path], None], needed: int, what: str, checksums: bool = True
) -> None:
    """Make `tmp` (which must not exist) and fill it with `write`, then its checksums.

    Refused before anything is written when the disk has less than `needed` bytes free; an
    OSError while writing (a disk full after all, permissions) removes `tmp` and becomes one
    line naming the path and the space needed.
    """
    check_free_space(tmp.parent, needed, what)
    try:
        tmp.mkdir()
        write(tmp)
        if checksums:
            write_checksums(tmp)
    except (OSError, SafetensorError) as exc:
        # safetensors reports the OS's error inside its own: "I/O error: No space left ..."
        error = exc if isinstance(exc, OSError) else OSError(_os_reason(str(exc)))
        shutil.rmtree(tmp, ignore_errors=True)
        raise write_error(error, tmp.parent, needed, what) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def rename_into_place(tmp: Path, final: Path, replace: bool, needed: int, what: str) -> None:
    """Rename `tmp` to `final`; an existing `final` is removed first only when `replace`."""
    try:
        if replace and final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise write_error(exc, tmp.parent, needed, what) from None


def _os_reason(message: str) -> str:
    """The OS's words in "...: I/O error: No space left on device (os error 28)"."""
    return re.sub(r" \(os error \d+\)$", "", message.rpartition(": ")[2])
