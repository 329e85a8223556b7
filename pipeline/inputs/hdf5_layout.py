"""What the HDF5 layouts share: finding their files, one episode per file, and telling them apart.

A folder of .hdf5 files may hold any HDF5 layout's episodes, so these layouts are not
detected by a mark on the folder but file by file: each says whether it `claims` an open
file, and `claim_folder` asks them about the folder's first recognisable file.
"""

from __future__ import annotations

import os
from abc import abstractmethod
from collections.abc import Iterable
from pathlib import Path

import h5py

from pipeline.inputs.hdf5_episode import H5Episode
from pipeline.inputs.layout import EpisodeRef, InputLayout, LayoutError


def find_hdf5(folder: Path) -> list[Path]:
    """Every *.hdf5 file under folder, following symlinked folders (rglob does not).

    Each real folder is read once, under its first path in sorted order: a link back up
    the tree ends there instead of looping, and two links to one folder give no duplicates.
    """
    seen: set[tuple[int, int]] = set()
    found = []
    for top, dirs, files in os.walk(folder, followlinks=True):
        info = os.stat(top)
        if (info.st_dev, info.st_ino) in seen:
            dirs.clear()
            continue
        seen.add((info.st_dev, info.st_ino))
        dirs.sort()
        found += [Path(top, f) for f in files if f.endswith(".hdf5")]
    return [p for p in found if p.is_file()]


class HDF5Layout(InputLayout):
    """Base of the layouts that keep episodes in .hdf5 files, one per file unless a subclass
    lists several (see demos.py). A subclass sets the class attributes and `claims`."""

    episode_class: type[H5Episode]
    # claim_folder asks lower ranks first: a layout whose marks other layouts' files also
    # carry (processed's bare `action`) must ask after them.
    claim_rank = 0

    def detect(self, root: Path) -> bool:
        """HDF5 layouts carry no folder mark; claim_folder tells them apart by their files."""
        return False

    @abstractmethod
    def claims(self, f: h5py.File) -> bool:
        """Whether an open file, asked in claim_rank order, is one of this layout's episodes."""

    def episode_dir(self, root: Path) -> Path:
        """Where under the input folder this layout keeps its episode files."""
        return root

    def misplaced(self, root: Path) -> str:
        """The message for an episode this layout claims outside `episode_dir(root)`."""
        return f"{root}: {self.name} episodes belong under {self.episode_dir(root)}"

    def episode_files(self, root: Path) -> list[Path]:
        """Every *.hdf5 file under episode_dir(root), sorted by path relative to root."""
        root = Path(root)
        if not root.is_dir():
            raise LayoutError(f"Episode folder {root} does not exist.")
        folder = self.episode_dir(root)
        paths = find_hdf5(folder) if folder.is_dir() else []
        if not paths:
            raise LayoutError(f"No *.hdf5 episodes found in {self._where(root, folder)}.")
        return sorted(paths, key=lambda p: p.relative_to(root).as_posix())

    def _where(self, root: Path, folder: Path) -> str:
        return str(root)

    def list_episodes(self, root: Path) -> list[EpisodeRef]:
        root = Path(root)
        return [EpisodeRef(p, p.relative_to(root).as_posix()) for p in self.episode_files(root)]


def claim_folder(root: Path, layouts: Iterable[HDF5Layout]) -> HDF5Layout | None:
    """The layout claiming the first recognisable .hdf5 file of `root` (None: no file is).

    Files are looked for where a layout keeps them apart from the input folder (RoboTwin's
    data/) first, then in the whole folder. Raises LayoutError when there is no .hdf5 file
    at all, or the claimed file lies outside its layout's episode folder.
    """
    ranked = sorted(layouts, key=lambda layout: layout.claim_rank)
    candidates: list[Path] = []
    for folder in sorted({layout.episode_dir(root) for layout in ranked} - {root}):
        candidates = candidates or (find_hdf5(folder) if folder.is_dir() else [])
    candidates = candidates or find_hdf5(root)
    if not candidates:
        raise LayoutError(f"No *.hdf5 episodes found in {root}.")
    for path in sorted(candidates):
        try:
            with h5py.File(path, "r") as f:
                claimed = next((layout for layout in ranked if layout.claims(f)), None)
        except OSError:
            continue  # one broken file should not hide the layout of the rest
        if claimed is None:
            continue
        if not path.is_relative_to(claimed.episode_dir(root)):
            raise LayoutError(claimed.misplaced(root))
        return claimed
    return None
