"""Where a TFDS set is: the version folder under a data, dataset or version folder, its files.

TFDS writes `DATA_DIR/<name>[/<config>]/<version>/` holding `dataset_info.json`,
`features.json` and `<name>-<split>.<format>-0000X-of-0000N` record files. Reads only
JSON, so layout detection needs none of the record readers' packages.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from pipeline.rlds.errors import RldsError
from pipeline.rlds.features import FeaturesError, FeatureSpec, read_features

INFO_FILE = "dataset_info.json"
FEATURES_FILE = "features.json"
FORMATS = ("tfrecord", "array_record")
_VERSION = re.compile(r"^\d+\.\d+\.\d+$")
# The splits converted: a set's val split becomes our validation episodes; others (test) are
# held out by their makers and left alone.
SPLITS = {"train": "train", "val": "val", "validation": "val"}


@dataclass(frozen=True)
class RldsSet:
    """One version of one dataset."""

    folder: Path  # the version folder
    name: str
    version: str
    file_format: str
    features: dict[str, FeatureSpec]
    splits: dict[str, int]  # split -> its number of record files


def _version_key(folder: Path) -> tuple[int, ...]:
    return tuple(int(p) for p in folder.name.split("."))


def version_folders(root: Path) -> list[Path]:
    """Folders under root (root itself, or up to three levels down) that hold a TFDS set."""
    if (root / INFO_FILE).is_file():
        return [root]
    found = [
        p.parent
        for depth in (1, 2, 3)
        for p in root.glob("/".join(["*"] * depth) + "/" + INFO_FILE)
    ]
    return sorted(p for p in found if _VERSION.match(p.name))


def is_rlds_dir(root: Path) -> bool:
    return bool(version_folders(Path(root)))


def locate(root: Path, dataset: str | None = None) -> RldsSet:
    """The set root holds: root is a version folder, a dataset folder (its newest version is
    read) or a TFDS data folder holding several datasets (`dataset` names the one to read)."""
    root = Path(root)
    folders = version_folders(root)
    if not folders:
        raise RldsError(f"{root}: no TFDS set found (no <version>/{INFO_FILE} inside)")
    by_dataset: dict[str, list[Path]] = {}
    for folder in folders:
        by_dataset.setdefault(
            folder.parent.relative_to(root).as_posix() if folder != root else ".", []
        ).append(folder)
    if dataset is not None:
        chosen = {k: v for k, v in by_dataset.items() if dataset in (k, Path(k).name) or k == "."}
        if not chosen:
            raise RldsError(
                f"{root}: no dataset {dataset!r} here; it holds {', '.join(sorted(by_dataset))}"
            )
        by_dataset = chosen
    if len(by_dataset) > 1:
        raise RldsError(
            f"{root} holds {len(by_dataset)} TFDS datasets ({', '.join(sorted(by_dataset))}); "
            "name one with --rlds-dataset NAME or pass its folder"
        )
    newest = max(next(iter(by_dataset.values())), key=_version_key)
    return open_set(newest)


@lru_cache(maxsize=8)
def open_set(folder: Path) -> RldsSet:
    """The set in a version folder, from its dataset_info.json and features.json."""
    info_path = folder / INFO_FILE
    try:
        info = json.loads(info_path.read_text())
    except OSError as e:
        raise RldsError(f"{info_path}: unreadable ({e.strerror or e})") from None
    except ValueError as e:
        raise RldsError(f"{info_path}: not valid JSON ({e})") from None
    if not isinstance(info, dict) or not isinstance(info.get("splits"), list):
        raise RldsError(f"{info_path}: not a TFDS dataset_info.json (no splits)")
    file_format = str(info.get("fileFormat", "tfrecord"))
    if file_format not in FORMATS:
        raise RldsError(
            f"{folder}: records stored as {file_format}; this reads {' and '.join(FORMATS)}"
        )
    try:
        features = read_features(folder / FEATURES_FILE)
    except FeaturesError as e:
        raise RldsError(str(e)) from None
    splits = {
        # TFDS 4 lists each file's record count; older versions only the file count.
        str(s.get("name")): len(s.get("shardLengths", [])) or int(s.get("numShards", 0))
        for s in info["splits"]
        if isinstance(s, dict)
    }
    name = str(info.get("name") or folder.parent.name)
    return RldsSet(folder, name, folder.name, file_format, features, splits)


def record_files(rset: RldsSet) -> list[tuple[str, Path]]:
    """(split, file) of every record file of the converted splits; all must be present."""
    files = []
    for split, count in sorted(rset.splits.items()):
        if split not in SPLITS:
            continue
        for index in range(count):
            path = (
                rset.folder / f"{rset.name}-{split}.{rset.file_format}-{index:05d}-of-{count:05d}"
            )
            if not path.is_file():
                raise RldsError(
                    f"{path} is missing: {INFO_FILE} lists {count} files for split {split}"
                )
            files.append((SPLITS[split], path))
    if not files:
        raise RldsError(
            f"{rset.folder}: no train or val split in {INFO_FILE} (has {', '.join(rset.splits)})"
        )
    return files


def split_of(rset: RldsSet, path: Path) -> str:
    """Our split (train or val) of one of the set's record files, from its name."""
    prefix = f"{rset.name}-"
    split = path.name[len(prefix) :].split(".", 1)[0] if path.name.startswith(prefix) else ""
    if split not in SPLITS:
        raise RldsError(f"{path.name} is not a train or val record file of {rset.name}")
    return SPLITS[split]
