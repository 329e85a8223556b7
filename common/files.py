"""Small text and JSON files read whole, a failure to read one turned into the caller's error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_text(path: Path, error: type[Exception], missing: str = "missing") -> str:
    """The file's text; else `error` (a UserError, or a skipped episode's reason) naming it,
    with `missing` as the message when it does not exist (say what the folder should hold)."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path}: {missing}") from None
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise error(f"{path}: not UTF-8 text") from None


def read_json(path: Path, error: type[Exception], fix: str) -> Any:
    """The file's JSON value; else `error` naming it and `fix`, the way to a good one."""
    text = read_text(path, error, f"missing; {fix}")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise error(f"{path}: not readable JSON ({exc}); {fix}") from None
