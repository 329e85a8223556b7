"""A scratch folder for one bench run, removed when the run ends: benches write gigabytes."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path


def scratch_dir() -> Path:
    """A new temporary folder, deleted with everything in it when the process exits."""
    root = Path(tempfile.mkdtemp(prefix="vla-bench-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return root
