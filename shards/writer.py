"""Deterministic tar shards: samples as ready-made tar blocks, rolled into `{split}-NNNNNN.tar`.

A sample is turned into its tar bytes once (in a conversion worker); writing a shard is
then a plain concatenation, so shard assembly costs no more than copying bytes.
"""

from __future__ import annotations

import hashlib
import tarfile
from dataclasses import dataclass
from pathlib import Path

from shards.format import shard_name

_BLOCK = tarfile.BLOCKSIZE
# Two zero blocks end an archive; padding the file to a whole record keeps GNU tar quiet.
_RECORD = tarfile.RECORDSIZE


def tar_member(name: str, data: bytes) -> bytes:
    """One regular-file tar member with fixed owner, mode and mtime (byte-reproducible)."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    header = info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="strict")
    padding = (-len(data)) % _BLOCK
    return header + data + b"\0" * padding


def sample_tar_bytes(key: str, members: dict[str, bytes]) -> bytes:
    """All members of one sample, in the given order, as consecutive tar members `key.field`."""
    return b"".join(tar_member(f"{key}.{field}", data) for field, data in members.items())


@dataclass(frozen=True)
class ShardRecord:
    """What the manifest says about one written shard."""

    name: str
    bytes: int
    samples: int
    sha256: str


class ShardWriter:
    """Appends sample tar bytes to `{split}-NNNNNN.tar` files in `out_dir`, a new one every N."""

    def __init__(self, out_dir: Path, split: str, shard_samples: int) -> None:
        if shard_samples < 1:
            raise ValueError("shard_samples must be at least 1")
        self.out_dir = out_dir
        self.split = split
        self.shard_samples = shard_samples
        self.records: list[ShardRecord] = []
        self._file = None
        self._hash = hashlib.sha256()
        self._size = 0
        self._count = 0

    def add(self, sample: bytes) -> None:
        if self._file is None:
            self._open()
        self._write(sample)
        self._count += 1
        if self._count == self.shard_samples:
            self._close_current()

    def close(self) -> list[ShardRecord]:
        if self._file is not None:
            self._close_current()
        return self.records

    def _open(self) -> None:
        path = self.out_dir / shard_name(self.split, len(self.records))
        self._file = open(path, "wb")  # noqa: SIM115 - closed in _close_current
        self._hash = hashlib.sha256()
        self._size = 0
        self._count = 0

    def _write(self, data: bytes) -> None:
        self._file.write(data)
        self._hash.update(data)
        self._size += len(data)

    def _close_current(self) -> None:
        end = 2 * _BLOCK
        end += (-(self._size + end)) % _RECORD
        self._write(b"\0" * end)
        self._file.close()
        name = shard_name(self.split, len(self.records))
        self.records.append(ShardRecord(name, self._size, self._count, self._hash.hexdigest()))
        self._file = None

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
