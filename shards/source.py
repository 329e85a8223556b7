"""Where a shard set lives (a folder, http(s) or s3:// prefix): its manifest, stats and shards."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from common.errors import UserError
from common.files import read_text
from shards import s3
from shards.format import MANIFEST_FILE, STATS_FILE
from shards.http import ResumingStream
from shards.manifest import Manifest, parse_manifest
from stats.compute import DatasetStats
from stats.io import StatsError, parse_stats

_URL_SCHEMES = ("http://", "https://", s3.SCHEME)


class ShardSetError(UserError):
    """A shard set cannot be used: missing folder, missing files, or stats that do not fit."""


def is_url(source: str) -> bool:
    return source.startswith(_URL_SCHEMES)


@dataclass(frozen=True)
class ShardSet:
    """An opened shard set: `source` is a folder path or a URL prefix ending in `/`."""

    source: str
    manifest: Manifest
    stats: DatasetStats  # the entry of stats.json named by the manifest's dataset
    stats_text: str  # stats.json verbatim, copied into every checkpoint

    def shard_names(self, split: str) -> list[str]:
        return [s.name for s in self.manifest.shards(split)]

    def location(self, name: str) -> str:
        return _join(self.source, name)

    def open_shard(self, name: str) -> IO[bytes]:
        """A read stream over one shard; raises OSError (URLError included) when it can't open."""
        if self.source.startswith(s3.SCHEME):
            return s3.open_object(self.location(name))
        if is_url(self.source):
            # Streamed front to back, no temp file; a stall or a break is retried and resumed.
            return io.BufferedReader(ResumingStream(self.location(name)), buffer_size=1 << 20)
        return open(self.location(name), "rb", buffering=1 << 20)  # noqa: SIM115 - caller closes


def open_shard_set(source: str | Path, check_files: bool = True) -> ShardSet:
    """Read and check manifest.json and stats.json of a folder or URL prefix.

    `check_files=False` leaves missing shards to the caller (verify reports them per shard).
    """
    source = str(source)
    if is_url(source):
        source = source if source.endswith("/") else source + "/"
        manifest_text = _fetch_text(source + MANIFEST_FILE)
        stats_text = _fetch_text(source + STATS_FILE)
    else:
        folder = Path(source)
        if not folder.is_dir():
            raise ShardSetError(f"{folder}: no such folder; pass the output of `vla-data convert`")
        if not any(folder.iterdir()):
            raise ShardSetError(f"{folder}: the folder is empty; convert episodes into it first")
        missing = "missing; is this a vla-shards folder?"
        manifest_text = read_text(folder / MANIFEST_FILE, ShardSetError, missing)
        stats_text = read_text(folder / STATS_FILE, ShardSetError, missing)
    manifest = parse_manifest(manifest_text, _join(source, MANIFEST_FILE))
    stats = parse_stats(stats_text, _join(source, STATS_FILE))
    shard_set = ShardSet(source, manifest, _dataset_entry(manifest, stats, source), stats_text)
    if check_files and not is_url(source):
        _check_files(shard_set)
    return shard_set


def _join(source: str, name: str) -> str:
    """A file of the set: URL prefixes end in `/`, folders are joined as paths."""
    return source + name if is_url(source) else str(Path(source) / name)


def _fetch_text(url: str) -> str:
    try:
        if url.startswith(s3.SCHEME):
            return s3.read_text(url)
        with ResumingStream(url) as response:
            return response.read().decode()
    except OSError as exc:
        text = str(exc)  # HTTP errors name the URL already
        raise ShardSetError(
            text if text.startswith(url) else f"{url}: cannot fetch ({text})"
        ) from None


def _dataset_entry(manifest: Manifest, stats: dict[str, DatasetStats], source: str) -> DatasetStats:
    where = _join(source, STATS_FILE)
    entry = stats.get(manifest.dataset)
    if entry is None:
        raise StatsError(
            f"{where}: no entry for dataset {manifest.dataset!r} (has {sorted(stats)})"
        )
    for quantity, dims in (("action", manifest.action_dim), ("proprio", manifest.proprio_dim)):
        values = getattr(entry, quantity)
        if values is None and dims is not None:
            problem = f"no {quantity} statistics"
        elif values is not None and len(values.mean) != dims:
            problem = f"{quantity} has {len(values.mean)} dims"
        else:
            continue
        raise StatsError(
            f"{where}: {problem}, the manifest's {quantity}_dim is {dims}; the set's files "
            "do not belong together"
        )
    return entry


def _check_files(shard_set: ShardSet) -> None:
    """Every shard the manifest lists is on disk: a missing one is a copy gone wrong."""
    for split in shard_set.manifest.splits:
        missing = [
            n for n in shard_set.shard_names(split) if not Path(shard_set.location(n)).is_file()
        ]
        if missing:
            raise ShardSetError(
                f"{shard_set.source}: {len(missing)} shard(s) listed in {MANIFEST_FILE} are "
                f"missing, e.g. {missing[0]}; copy the whole folder"
            )
