"""The plan: everything a conversion decides about its episodes before it writes a byte.

Stage 2 (probe.py) makes it, stage 3 (encode.py) adds where each episode's samples lie, and
stages 4 and 5 (write.py) write shards, stats.json and manifest.json from it. `vla-data
stats` on episodes uses the same plan, so its statistics equal what convert writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.inputs.layout import EpisodeInfo


@dataclass
class EncodeResult:
    """Where an episode's encoded samples lie: the answer of an encoding worker."""

    spool: Path
    offsets: np.ndarray | None  # int64 (T, 2): byte offset and length of sample t in the spool
    reason: str | None = None  # set when the episode failed while encoding


@dataclass
class EpisodeProbe:
    """What planning learned about one episode file."""

    path: Path
    relative: str  # posix path relative to the input folder (`#demo` for one of a file's many)
    sha256: str
    info: EpisodeInfo | None  # None when unreadable
    reason: str | None = None  # why the episode is skipped; None when good
    key: str = ""
    split: str | None = None
    encoded: EncodeResult | None = None  # set by the encode stage
    item: str | None = None  # which episode of a file holding many (a demo group)
    instruction: str | None = None  # given from outside the file (--instruction, instruction.txt)

    @property
    def ok(self) -> bool:
        return self.reason is None


@dataclass
class Plan:
    layout: str
    cameras: tuple[str, ...]  # set names
    probes: list[EpisodeProbe]  # every episode, in sorted relative-path order
    decisions: list[str] = field(default_factory=list)  # choices that left something out
    rename: dict[str, str] = field(default_factory=dict)  # own/set name -> set name (--cameras)

    def good(self, split: str | None = None) -> list[EpisodeProbe]:
        return [p for p in self.probes if p.ok and (split is None or p.split == split)]

    def skipped(self) -> list[EpisodeProbe]:
        return [p for p in self.probes if not p.ok]
