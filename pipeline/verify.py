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
from typing import IO

import numpy as np

from shards.format import (
    ACTIONS_MEMBER,
    META_MEMBER,
    camera_member,
    decode_actions,
    decode_jpeg,
    decode_meta,
    sample_key,
)
from shards.manifest import Manifest, ShardEntry, read_manifest
from shards.samples import ShardReadError, iter_raw_samples
from shards.source import ShardSet, open_shard_set
from stats.verify import RowCollector, StatsMismatch, compare

MAX_LISTED = 5  # problems listed per shard; the rest are counted
_META_FIELDS = {"episode": str, "t": int, "steps": int, "valid": int, "instructions": list,
                "unseen": list, "dataset": str}  # fmt: skip


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


def check_sample(raw: dict, manifest: Manifest) -> tuple[list[str], dict | None, np.ndarray | None]:
    """Contract problems of one raw sample, plus its decoded meta and actions when they decode."""
    key = raw["__key__"]
    problems = []
    expected = {camera_member(c) for c in manifest.cameras} | {ACTIONS_MEMBER, META_MEMBER}
    present = {f for f in raw if not f.startswith("__")}
    if present - expected:
        problems.append(f"{key}: unexpected member(s) {sorted(present - expected)}")
    if expected - present:
        return [*problems, f"{key}: missing member(s) {sorted(expected - present)}"], None, None
    size = manifest.image_size
    for camera in manifest.cameras:
        try:
            shape = decode_jpeg(raw[camera_member(camera)]).shape
        except ValueError as exc:
            problems.append(f"{key}: {camera}.jpg does not decode ({exc})")
            continue
        if shape != (size, size, 3):
            problems.append(f"{key}: {camera}.jpg is {shape}, expected ({size}, {size}, 3)")
    try:
        actions = decode_actions(raw[ACTIONS_MEMBER])
        meta = decode_meta(raw[META_MEMBER])
    except ValueError as exc:
        return [*problems, f"{key}: actions.npy or meta.json does not decode ({exc})"], None, None
    want = (manifest.chunk, manifest.action_dim)
    if actions.dtype != np.float32 or actions.shape != want:
        problems.append(f"{key}: actions.npy is {actions.dtype} {actions.shape}, expected {want}")
    problems += _meta_problems(key, meta, manifest)
    return problems, meta, actions


def _meta_problems(key: str, meta: dict, manifest: Manifest) -> list[str]:
    if not isinstance(meta, dict):
        return [f"{key}: meta.json is not an object"]
    wrong = [f for f, kind in _META_FIELDS.items() if not isinstance(meta.get(f), kind)]
    if wrong:
        return [f"{key}: meta.json lacks or mistypes {', '.join(wrong)}"]
    problems = []
    if key != sample_key(meta["episode"], meta["t"]):
        problems.append(f"{key}: key does not match meta episode/t")
    if not 0 <= meta["t"] < meta["steps"]:
        problems.append(f"{key}: t={meta['t']} outside the episode's {meta['steps']} steps")
    if meta["valid"] != min(manifest.chunk, meta["steps"] - meta["t"]):
        problems.append(f"{key}: valid={meta['valid']} disagrees with t and steps")
    if meta["dataset"] != manifest.dataset:
        problems.append(f"{key}: dataset {meta['dataset']!r}, manifest says {manifest.dataset!r}")
    proprio = meta.get("proprio")
    if (proprio is None) != (manifest.proprio_dim is None) or (
        proprio is not None and len(proprio) != manifest.proprio_dim
    ):
        problems.append(f"{key}: proprio does not match proprio_dim {manifest.proprio_dim}")
    return problems


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
                sample_problems, meta, actions = check_sample(raw, shard_set.manifest)
                problems += sample_problems
                if split == "train" and meta is not None and not sample_problems:
                    report.rows.add(meta, actions)
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


def train_rows(folder: Path) -> RowCollector:
    """Every train timestep's action (each sample's first row) and proprio, per episode."""
    rows = RowCollector()
    for shard in read_manifest(folder).shards("train"):
        path = folder / shard.name
        with open(path, "rb") as stream:
            for raw in iter_raw_samples(stream, str(path)):
                rows.add(decode_meta(raw[META_MEMBER]), decode_actions(raw[ACTIONS_MEMBER]))
    return rows


def verify_stats(folder: Path, rows: RowCollector | None = None) -> list[StatsMismatch]:
    """A local set's stats.json against its train samples, without checking the shards.

    `rows` are the set's train_rows when the caller has read them already.
    """
    shard_set = open_shard_set(folder, check_files=False)
    return check_stats(shard_set, rows if rows is not None else train_rows(folder))
