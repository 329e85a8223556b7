"""`vla-data verify`: trust a shard set you did not make, shard by shard.

Each shard is read once: its sha256, byte and sample counts against manifest.json, every
sample's members, shapes and meta against the contract; the train samples' first action
rows are gathered on the way and stats.json is recomputed from them at the end.
`vla-data stats --verify` recomputes it the same way (check_stats) from a quick read of
the train rows alone.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from shards.format import ACTIONS_MEMBER, META_MEMBER, decode_actions, decode_meta
from shards.manifest import Manifest, ShardEntry
from shards.samples import (
    RawSample,
    SampleError,
    ShardReadError,
    decode_sample,
    extra_fields,
    iter_raw_samples,
    meta_problems,
)
from shards.source import ShardSet, open_shard_set
from stats.compare import RowCollector, StatsMismatch, compare

MAX_LISTED = 5  # problems listed per shard; the rest are counted


@dataclass
class ShardReport:
    split: str
    name: str
    samples: int = 0
    problems: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    rows: RowCollector = field(default_factory=RowCollector)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class VerifyReport:
    shards: list[ShardReport]
    set_problems: list[str]
    stats_problems: list[StatsMismatch]

    @property
    def ok(self) -> bool:
        return not self.set_problems and not self.stats_problems and all(s.ok for s in self.shards)


class _HashingReader:
    """A read-only stream that hashes and counts what passes through it."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self.sha256 = hashlib.sha256()
        self.bytes = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self.sha256.update(data)
        self.bytes += len(data)
        return data

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


def check_sample(raw: RawSample, manifest: Manifest) -> tuple[list[str], dict[str, Any] | None]:
    """Contract problems of one raw sample, plus the decoded sample when it decodes: the
    reader's checks (decode_sample) for every camera of the set, then the rest of the rules."""
    key = raw["__key__"]
    extras = extra_fields(raw, manifest.cameras)
    problems = [f"sample {key}: unexpected member(s) {extras}"] if extras else []
    try:
        sample = decode_sample(raw, manifest.cameras, manifest)
    except SampleError as exc:
        return [*problems, str(exc)], None
    return [*problems, *meta_problems(key, sample["meta"], manifest)], sample


def verify_shard(shard_set: ShardSet, split: str, entry: ShardEntry) -> ShardReport:
    """Read one shard front to back and check it; never raises for bad content."""
    report = ShardReport(split, entry.name)
    problems: list[str] = []
    try:
        with shard_set.open_shard(entry.name) as stream:
            reader = _HashingReader(stream)
            for raw in iter_raw_samples(reader, entry.name):
                report.samples += 1
                report.keys.append(raw["__key__"])
                sample_problems, sample = check_sample(raw, shard_set.manifest)
                problems += sample_problems
                if split == "train" and not sample_problems:
                    report.rows.add(sample["meta"], sample["actions"])
            reader.drain()
    except OSError as exc:
        report.problems.append(f"cannot read ({exc})")
        return report
    except ShardReadError as exc:
        report.problems.append(str(exc).removeprefix(f"{entry.name}: "))
    if reader.sha256.hexdigest() != entry.sha256:
        report.problems.append("sha256 differs from manifest.json")
    if reader.bytes != entry.bytes:
        report.problems.append(f"{reader.bytes} bytes, manifest.json says {entry.bytes}")
    if report.samples != entry.samples:
        report.problems.append(f"{report.samples} samples, manifest.json says {entry.samples}")
    report.problems += problems[:MAX_LISTED]
    if len(problems) > MAX_LISTED:
        report.problems.append(f"... and {len(problems) - MAX_LISTED} more sample problems")
    return report


def summarize(shard_set: ShardSet, reports: list[ShardReport]) -> VerifyReport:
    """Set-wide checks once every shard is read: unique keys and stats.json."""
    set_problems = []
    seen: set[str] = set()
    duplicates = 0
    for report in reports:
        for key in report.keys:
            duplicates += key in seen
            seen.add(key)
    if duplicates:
        set_problems.append(f"{duplicates} sample key(s) appear more than once")
    rows = RowCollector()
    for report in reports:
        rows.merge(report.rows)
    stats_problems: list[StatsMismatch] = []
    if not all(r.ok for r in reports if r.split == "train"):
        set_problems.append("stats.json not checked: some train shards failed")
    elif not rows.actions:
        set_problems.append("no train samples: stats.json cannot be checked")
    else:
        stats_problems = check_stats(shard_set, rows)
    return VerifyReport(reports, set_problems, stats_problems)


def check_stats(shard_set: ShardSet, rows: RowCollector) -> list[StatsMismatch]:
    """stats.json against the statistics recomputed from the set's train rows."""
    # The mask follows the options the set was made with, not stats.json, so an edited mask shows.
    no_normalize = list(shard_set.manifest.options.get("no_normalize_dims", []))
    return compare(shard_set.stats, rows.stats(no_normalize))


def train_rows(shard_set: ShardSet) -> RowCollector:
    """Every train timestep's action (each sample's first row) and proprio, per episode, of a
    local set."""
    rows = RowCollector()
    for shard in shard_set.manifest.shards("train"):
        path = Path(shard_set.source) / shard.name
        with open(path, "rb") as stream:
            for raw in iter_raw_samples(stream, str(path)):
                rows.add(decode_meta(raw[META_MEMBER]), decode_actions(raw[ACTIONS_MEMBER]))
    return rows


def verify_stats(folder: Path) -> list[StatsMismatch]:
    """A local set's stats.json against its train samples, without checking the shards."""
    shard_set = open_shard_set(folder, check_files=False)
    return check_stats(shard_set, train_rows(shard_set))
