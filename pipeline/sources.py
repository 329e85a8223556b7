"""Every episode of an input folder, whatever its layout, as a reference a worker can open.

A reference names the file (hashed into the manifest) and, where one file holds many
episodes (LIBERO and robomimic demos, LeRobot's shared files), which one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pipeline.episodes import (
    FILE_LAYOUTS,
    AlohaEpisode,
    Episode,
    H5Episode,
    LayoutError,
    ProcessedEpisode,
    RobotwinEpisode,
    list_episodes,
)
from pipeline.libero import KNOWN_CAMERAS as DEMO_CAMERAS
from pipeline.libero import DemoEpisode, list_demos

# Each layout's own camera names that map to canonical ones; others keep their own name.
KNOWN_CAMERAS: dict[str, dict[str, str]] = {
    "processed": ProcessedEpisode.known,
    "robotwin": RobotwinEpisode.known,
    "aloha": AlohaEpisode.known,
    "libero": DEMO_CAMERAS,
    "robomimic": DEMO_CAMERAS,
    # LeRobot's image features are `observation.images.<name>`: ALOHA's names, or LIBERO's
    # as its ports spell them.
    "lerobot": {**AlohaEpisode.known, "image": "head", "wrist_image": "left_wrist"},
}


@dataclass(frozen=True)
class EpisodeRef:
    """One episode: its file, its path for the manifest, and its name inside the file."""

    path: Path  # the file read (and hashed) for it
    relative: str  # manifest path: the file's path under the input folder, `#item` if shared
    item: str | None = None  # demo group or LeRobot episode; None for a whole file (or none found)


def key_path(relative: str) -> str:
    """What an episode's sample key is made of: `a/b.hdf5#demo_3` -> `a/b/demo_3`."""
    base, _, item = relative.partition("#")
    base = base.removesuffix(".hdf5")
    return f"{base}/{item}" if item else base


def list_refs(root: Path, layout: str) -> list[EpisodeRef]:
    """Every episode under root, sorted by manifest path (`f.hdf5#demo_10` before `#demo_2`):
    the order `vla-data merge` rebuilds from manifests, so parts merge to the same set."""
    root = Path(root)
    if layout == "lerobot":
        from pipeline.lerobot import list_lerobot  # its parquet/video readers are an extra

        return list_lerobot(root)
    files = list_episodes(root, layout)
    if layout in FILE_LAYOUTS:
        return [EpisodeRef(p, p.relative_to(root).as_posix()) for p in files]
    refs = []
    for path in files:
        relative = path.relative_to(root).as_posix()
        try:
            demos = list_demos(path)
        except OSError:
            demos = []
        if not demos:  # unreadable or demo-less: one entry, which probing then skips with why
            refs.append(EpisodeRef(path, relative))
        refs += [EpisodeRef(path, f"{relative}#{d}", d) for d in demos]
    if not refs:
        raise LayoutError(f"No demos found in the *.hdf5 files of {root}.")
    return sorted(refs, key=lambda r: r.relative)


def open_episode(
    ref: EpisodeRef,
    layout: str,
    instruction: str | None = None,
    rename: Mapping[str, str] | None = None,
) -> H5Episode:
    """The episode reader for a reference; use as a context manager."""
    if layout == "lerobot":
        from pipeline.lerobot import LerobotEpisode

        return LerobotEpisode(ref, instruction, rename)
    if layout in ("libero", "robomimic"):
        return DemoEpisode(ref.path, ref.item, layout, instruction, rename)
    return Episode(ref.path, layout, instruction, rename)
