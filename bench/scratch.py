"""A scratch folder for one bench run, removed when the run ends: benches write gigabytes."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path


def scratch_dir() -> Path:
    """A new temporary folder, deleted with everything in it when the process exits."""
    root = Path(tempfile.mkdtemp(prefix="vla-bench-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return root


def temp_files_into(root: Path) -> None:
    """Send this process's and its children's temporary files into `root`/tmp.

    Libraries leave files in the system's temporary folder after a run (MosaicML Streaming
    its file locks, litdata its chunk and data caches, torch its compiler cache: all under
    `tempfile.gettempdir()`, which follows TMPDIR). Inside a folder that is removed or
    pruned, they go with it.
    """
    folder = root / "tmp"
    folder.mkdir(exist_ok=True)
    os.environ["TMPDIR"] = str(folder)
    tempfile.tempdir = str(folder)  # gettempdir() caches its first answer
