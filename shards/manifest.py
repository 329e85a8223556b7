"""manifest.json: what a shard set holds, how it was made, and the checksums to trust it by."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from common.errors import UserError
from common.files import read_text
from shards.format import FORMAT_NAME, FORMAT_VERSION, MANIFEST_FILE, SOURCE_VERSION, SPLITS


class ManifestError(UserError):
    """A folder's manifest.json is missing, unreadable or not a vla-shards manifest."""


@dataclass
class ShardEntry:
    name: str
    bytes: int
    samples: int
    sha256: str


@dataclass
class EpisodeEntry:
    path: str  # relative to the input folder, posix separators
    key: str  # the `{episode}` of its sample keys ("" when skipped before a key was given)
    sha256: str
    steps: int
    split: str | None  # "train" | "val" | None when skipped
    status: str  # "ok" | "skipped"
    reason: str | None = None
    # Where its input says it came from (RLDS: split, file_path); format version 2 on.
    source: dict[str, str] | None = None
    dropped_steps: int = 0  # no-op steps left out by `--robot libero` (OpenVLA-OFT's rule)


@dataclass
class Manifest:
    dataset: str
    tool_version: str
    layout: str
    cameras: list[str]
    chunk: int
    action_dim: int
    proprio_dim: int | None
    image_size: int
    options: dict[str, Any]
    splits: dict[str, list[ShardEntry]] = field(default_factory=dict)
    episodes: list[EpisodeEntry] = field(default_factory=list)
    format: str = FORMAT_NAME
    format_version: int = 1  # raised to what the manifest holds needs (needed_version)

    def __post_init__(self) -> None:
        self.format_version = max(self.format_version, needed_version(self.episodes))

    def shards(self, split: str) -> list[ShardEntry]:
        return self.splits.get(split, [])

    def samples(self, split: str) -> int:
        return sum(s.samples for s in self.shards(split))

    def episode_count(self, split: str) -> int:
        return sum(1 for e in self.episodes if e.status == "ok" and e.split == split)

    def skipped(self) -> list[EpisodeEntry]:
        return [e for e in self.episodes if e.status != "ok"]

    def digest(self) -> str:
        """sha256 over every shard's split, name and sha256: what the set holds, not its name."""
        lines = (f"{split}/{s.name}/{s.sha256}\n" for split in SPLITS for s in self.shards(split))
        return hashlib.sha256("".join(lines).encode()).hexdigest()

    def to_json(self) -> str:
        data = asdict(self)
        for entry in data["episodes"]:
            if entry["source"] is None:  # absent, as in version 1, unless the input said
                del entry["source"]
            # Only sets made with --robot libero have it.
            if not entry["dropped_steps"]:
                del entry["dropped_steps"]
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    def dropped_steps(self) -> int:
        return sum(e.dropped_steps for e in self.episodes)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        fields = dict(data)
        fields["splits"] = {
            split: [ShardEntry(**s) for s in shards]
            for split, shards in data.get("splits", {}).items()
        }
        fields["episodes"] = [EpisodeEntry(**e) for e in data.get("episodes", [])]
        return cls(**fields)


def needed_version(episodes: list[EpisodeEntry]) -> int:
    """The oldest format version holding these entries: 1 unless one has a `source` or
    `dropped_steps`, which version 1 readers refuse as unknown keys."""
    extras = any(e.source is not None or e.dropped_steps for e in episodes)
    return SOURCE_VERSION if extras else 1


def is_shard_set(folder: Path) -> bool:
    """True when `folder` holds a manifest.json written by this format (any version)."""
    try:
        data = json.loads((folder / MANIFEST_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("format") == FORMAT_NAME


def parse_manifest(text: str, source: str) -> Manifest:
    """Parse manifest text; `source` names the file or URL in error messages."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ManifestError(f"{source}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        raise ManifestError(f"{source}: not a {FORMAT_NAME} manifest")
    version = data.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ManifestError(
            f"{source}: format version {version} is newer than this tool reads "
            f"({FORMAT_VERSION}); upgrade vla-shards"
        )
    if not isinstance(data.get("splits", {}), dict):
        raise ManifestError(f"{source}: splits must map split names to lists of shards")
    try:
        manifest = Manifest.from_dict(data)
    except (TypeError, AttributeError) as exc:  # an entry that is not an object
        raise ManifestError(f"{source}: malformed manifest ({exc})") from None
    unknown = set(manifest.splits) - set(SPLITS)
    if unknown:
        raise ManifestError(f"{source}: unknown split(s) {sorted(unknown)}")
    for shards in manifest.splits.values():
        for shard in shards:
            if not is_plain_name(shard.name):
                raise ManifestError(
                    f"{source}: shard name {shard.name!r} is not a plain file name in the set"
                )
    return manifest


def is_plain_name(name: object) -> bool:
    """A file directly inside the set: shards are opened by joining their name to the set's
    location, so a path (`/etc/passwd`, `../x`) or a hidden name must never get that far."""
    return (
        isinstance(name, str)
        and bool(name)
        and not name.startswith(".")
        and not any(c in name for c in "/\\\0")
    )


def read_manifest(folder: Path) -> Manifest:
    path = folder / MANIFEST_FILE
    text = read_text(path, ManifestError, "missing; is this a vla-shards folder?")
    return parse_manifest(text, str(path))


def write_manifest(folder: Path, manifest: Manifest) -> None:
    (folder / MANIFEST_FILE).write_text(manifest.to_json())
