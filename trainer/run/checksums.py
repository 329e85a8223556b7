"""sha256 of each file of a checkpoint folder, in `sha256sum -c`'s format, written and checked."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from common.errors import UserError

CHECKSUM_FILE = "checksums.sha256"
_CHUNK = 1 << 20
log = logging.getLogger(__name__)


class CorruptCheckpointError(UserError):
    """A checkpoint file differs from what was saved, or is missing."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_checksums(folder: Path) -> None:
    """Record every file now in `folder` (written last: a folder that has it is complete)."""
    names = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name != CHECKSUM_FILE)
    lines = "".join(f"{file_sha256(folder / name)}  {name}\n" for name in names)
    tmp = folder / f".{CHECKSUM_FILE}.tmp"
    tmp.write_text(lines)
    tmp.replace(folder / CHECKSUM_FILE)


def read_checksums(folder: Path) -> dict[str, str] | None:
    """name -> sha256 as recorded; None when the folder records none (saved before checksums)."""
    path = folder / CHECKSUM_FILE
    if not path.is_file():
        return None
    recorded = {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CorruptCheckpointError(f"{path}: unreadable ({exc})") from None
    for number, line in enumerate(text.splitlines(), 1):
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64 or not name or "/" in name:
            raise CorruptCheckpointError(f"{path}: line {number} is not `SHA256  NAME`")
        recorded[name] = digest
    return recorded


def verify_checkpoint(folder: Path) -> bool:
    """Check each recorded file's sha256; True when verified, False when none are recorded.

    Raises CorruptCheckpointError naming the first file that is missing or differs.
    """
    folder = Path(folder)
    recorded = read_checksums(folder)
    if recorded is None:
        return False
    for name, digest in recorded.items():
        path = folder / name
        if not path.is_file():
            raise CorruptCheckpointError(f"{path}: missing (the checkpoint recorded it)")
        if file_sha256(path) != digest:
            raise CorruptCheckpointError(
                f"{path}: damaged (its sha256 differs from the one saved with it)"
            )
    return True


def check_checkpoint(folder: Path) -> None:
    """verify_checkpoint for a tool about to load `folder`: a damaged file is a one-line
    error; a folder saved before checksums were recorded loads, with a warning."""
    if not verify_checkpoint(folder):
        log.warning(
            "%s records no checksums (saved by an older version): its files are loaded "
            "unchecked", folder,
        )  # fmt: skip
