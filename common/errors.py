"""The errors a user can cause and fix, and the one line each command line makes of them."""

from __future__ import annotations

import errno

# A disk, a quota or a file-size limit full: the writer's problem, never one input's.
_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


class UserError(Exception):
    """Bad input, a bad option or a missing file: the message names it and the fix.

    Every error class a user can trigger derives from this, so a command line catches
    exactly one class in one place; anything else is a bug and keeps its traceback.
    """


class ConfigError(UserError, ValueError):
    """An option value a user gave cannot work; the message names the option."""


def error_line(exc: BaseException) -> str | None:
    """The one line a command line prints for a user's error; None for a bug.

    An OSError is the machine's answer to the user's files (disk full, permission denied,
    a folder that is not there): also theirs to fix, so it is `path: reason`, without
    Python's `[Errno N]` decoration.
    """
    if isinstance(exc, UserError):
        return str(exc)
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror or exc}"
    return None


def disk_full(exc: BaseException) -> bool:
    """Whether an error says there is no room left to write (disk, quota or file-size limit)."""
    return isinstance(exc, OSError) and exc.errno in _FULL


class DiskFull(UserError):
    """A write found no room; the message names the folder being written."""

    @classmethod
    def writing(cls, folder: object, exc: OSError) -> DiskFull:
        return cls(f"{folder}: {exc.strerror or exc} while writing; free space there and run again")
