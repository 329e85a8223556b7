"""The RLDS sets tests/assets/make_rlds_fixtures.py wrote with tensorflow-datasets' own builder,
what TFDS read back from them, and ways to damage a copy for the bad-input tests."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np

from pipeline.rlds.example import Example
from pipeline.rlds.tfrecord import masked_crc, read_record, record_offsets

ASSETS = Path(__file__).parent / "assets" / "rlds"
LIBERO, ALOHA, OXE = "libero_tiny_no_noops", "aloha_tiny", "oxe_tiny"
ARRAY_RECORD = "libero_tiny_array_record"


def copy_set(name: str, to: Path) -> Path:
    """A writable copy of one fixture set's dataset folder (`to/<name>/<version>/...`)."""
    shutil.copytree(ASSETS / name, to / name)
    return to / name


def recorded(name: str) -> dict[str, dict[str, np.ndarray]]:
    """What TFDS decoded from a set, per episode file_path (or `split/n`): `action`, `state`,
    `instruction` (per step), `split`, and each camera's first and last frame."""
    out: dict[str, dict] = {}
    with np.load(ASSETS / f"{name}.npz") as data:
        for key in data.files:
            episode, field = key.split("|")
            out.setdefault(episode, {})[field] = data[key]
    return out


def record_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.tfrecord-*"))


def framed(data: bytes) -> bytes:
    """One TFRecord: length, its masked CRC32C, data, the data's masked CRC32C."""
    length = struct.pack("<Q", len(data))
    return (
        length + struct.pack("<I", masked_crc(length)) + data + struct.pack("<I", masked_crc(data))
    )


def rewrite_record(path: Path, index: int, change) -> None:
    """Re-frame a record file with record `index` changed by `change(example)` (a parsed
    tf.train.Example), checksums valid: damage inside the data, not the framing."""
    with open(path, "rb") as f:
        records = [read_record(f, offset) for offset in record_offsets(path)]
    example = Example()
    example.ParseFromString(records[index])
    change(example)
    records[index] = example.SerializeToString()
    path.write_bytes(b"".join(framed(r) for r in records))
