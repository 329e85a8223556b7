"""The interface every input layout implements, and the episode it reads into memory.

An input layout is one recorder's way of keeping episodes on disk (RoboTwin's HDF5 files,
LIBERO's demo groups, a LeRobot folder, ...). Each lives in one module of this folder:
a subclass of `InputLayout`, listed once in `registry.INPUTS`, and a reader of one
episode that is an `EpisodeReader`. Nothing else in the converter knows one layout from
another: adding a layout is a new module and a line in that list. What the options say
about reading an input beyond its folder reaches every layout the same way, as one
`InputOptions`.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from common.errors import UserError

# Longest instruction accepted, in characters: real task instructions are one or two
# sentences, and every sample carries all of its episode's instructions in meta.json.
MAX_INSTRUCTION_CHARS = 2000


class EpisodeError(Exception):
    """One-line, user-facing reason an episode can't be used (the caller prefixes the file name)."""


class LayoutError(UserError):
    """Folder-level problem (missing, empty, unrecognised); the message names the folder."""


@dataclass(frozen=True)
class EpisodeRef:
    """One episode: its file, its path for the manifest, and its name inside the file."""

    path: Path  # the file read (and hashed) for it
    relative: str  # manifest path: the file's path under the input folder, `#item` if shared
    item: str | None = None  # demo group or LeRobot episode; None for a whole file (or none found)


@dataclass(frozen=True)
class InputOptions:
    """What the command line says about reading the input beyond its folder; the same object
    goes to every layout, and a layout that has no use for a field is never given it set
    (see `InputLayout.many_datasets`)."""

    dataset: str | None = None  # --rlds-dataset: which dataset of a folder holding several


NO_OPTIONS = InputOptions()


@dataclass
class EpisodeInfo:
    """The cheap facts about an episode, read without decoding its frames."""

    steps: int
    actions: np.ndarray  # float32 (steps, action dims), finite
    proprio: np.ndarray | None  # float32 (steps, state dims), or None when the layout has none
    cameras: tuple[str, ...]  # set names of the cameras present, canonical ones first
    instructions: list[str]  # language instructions seen in training
    unseen: list[str]  # held-out instructions (RoboTwin's `unseen`), kept for evaluation
    # Where the input says the episode came from, kept in the manifest (RLDS: its set's
    # `split` and `file_path`); None for layouts that say nothing.
    source: dict[str, str] | None = None
    dropped_steps: int = 0  # steps `--robot libero` left out as OpenVLA-OFT's no-ops


class EpisodeReader(Protocol):
    """One opened episode; a context manager that releases its files on exit. Made by
    `InputLayout.open_episode` as `episode_class(ref, instruction, rename)`.

    Cameras are named by their set names (see cameras.py: `set_names` turns the file's own
    names and `--cameras` renames into them). Every method raises EpisodeError for a
    problem of this episode alone; the conversion then skips it, saying why.
    """

    def __enter__(self) -> EpisodeReader: ...

    def __exit__(self, *exc: object) -> None: ...

    def present_cameras(self) -> tuple[str, ...]:
        """Set names of the cameras stored in this episode, canonical ones first."""
        ...

    def info(self) -> EpisodeInfo:
        """Actions, proprio and instructions, checked against each other (no frame decoded)."""
        ...

    def check_cameras(self, cameras: Sequence[str]) -> None:
        """Fail unless every one of `cameras` is present and can give a frame for every step."""
        ...

    def frames(self, camera: str, start: int, stop: int) -> np.ndarray:
        """Frames [start, stop) of one camera: uint8 (stop - start, H, W, 3), upright, true RGB."""
        ...


class InputLayout(ABC):
    """One recorder's layout of episodes on disk, as the converter sees it.

    A layout sets the class attributes and implements `detect` and `list_episodes`;
    `open_episode` opens a listed episode as `episode_class(ref, instruction, rename)`, and
    `dataset_name` names the set when `--name` does not.
    Instances are stateless and listed once in `registry.INPUTS`; worker processes look
    them up again by `name`, so nothing about a layout travels between processes.
    """

    name: str  # the `--layout` value and the manifest's `layout`
    known_cameras: Mapping[str, str]  # the layout's own camera names -> canonical set names
    needs_instruction = False  # no language of its own: --instruction or instruction.txt needed
    # A folder may hold several datasets, one chosen by `InputOptions.dataset`; other
    # layouts refuse that option rather than ignore it.
    many_datasets = False
    # Episodes may name their split (`EpisodeInfo.source["split"]`): without --val-episodes
    # the input's own val episodes are the set's; other layouts' default is 5%.
    keeps_splits = False
    # The reader of one episode, called as episode_class(ref, instruction, rename).
    episode_class: Callable[..., EpisodeReader]

    @abstractmethod
    def detect(self, root: Path) -> bool:
        """Whether `root` is plainly a folder of this layout, by a mark of its own (LeRobot's
        meta/info.json, say). HDF5 layouts answer False and are told apart file by file
        (`hdf5_layout.HDF5Layout.claims`), since one folder of .hdf5 files may be any of them."""

    @abstractmethod
    def list_episodes(self, root: Path, options: InputOptions = NO_OPTIONS) -> list[EpisodeRef]:
        """Every episode under `root`, sorted by manifest path (`EpisodeRef.relative`).

        Raises LayoutError when the folder is missing or holds no episode of this layout.
        An episode that cannot be listed properly is still listed: probing skips it with why.
        """

    def dataset_name(self, root: Path, options: InputOptions = NO_OPTIONS) -> str:
        """The set's name when `--name` is not given: the input folder's."""
        return Path(root).resolve().name

    def open_episode(
        self,
        ref: EpisodeRef,
        instruction: str | None = None,
        rename: Mapping[str, str] | None = None,
    ) -> EpisodeReader:
        """Open one listed episode. `instruction` is given from outside its files (used when
        it has none of its own); `rename` maps own or set camera names to the set's."""
        return self.episode_class(ref, instruction, rename)


def check_matrix(values: np.ndarray, what: str) -> np.ndarray:
    """A float32 (T, D) copy of a numeric 2-D array without NaN or inf."""
    if values.ndim != 2 or values.dtype.kind not in "fiu":
        raise EpisodeError(f"{what} must be a 2-D numeric array, got {values.dtype} {values.shape}")
    values = values.astype(np.float32)
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.argwhere(bad)[0, 0])
        raise EpisodeError(f"{what} has non-finite values (NaN or inf), first at row {row}")
    return values


def check_instruction_lengths(texts: Sequence[str]) -> None:
    """Refuse (EpisodeError) an episode with an instruction over MAX_INSTRUCTION_CHARS."""
    longest = max(map(len, texts), default=0)
    if longest > MAX_INSTRUCTION_CHARS:
        raise EpisodeError(
            f"an instruction has {longest} characters, over the limit of {MAX_INSTRUCTION_CHARS}"
        )


def require_extra(extra: str, what: str, modules: Sequence[str]) -> None:
    """Raise LayoutError naming the pip extra to install when one of `modules` is missing:
    layouts whose readers need more than the core packages import them only when used."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise LayoutError(
                f"Reading {what} needs the {extra} extra ({e.name} is missing): "
                f"pip install 'vla-shards[{extra}]'"
            ) from None


def skip_reason(exc: Exception, stage: str) -> str:
    """One line saying why an episode is skipped, for an EpisodeError or any other failure.

    Anything an episode file can trigger (a decoder's odd exception, running out of memory on
    a huge dataset) costs that episode only: one file must never end a long conversion.
    """
    if isinstance(exc, EpisodeError):
        text = str(exc)
    elif isinstance(exc, OSError):
        text = f"unreadable ({exc})"
    else:
        text = f"failed while {stage}: {type(exc).__name__}: {exc}"
    return " ".join(text.split())
