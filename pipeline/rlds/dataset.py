"""A TFDS set's episodes: list them by file and position, and read one of them.

One episode per record. An episode is known by its file and position (a TFRecord byte
offset, an ArrayRecord index), so a worker reads just that record, and memory stays flat
however large the set.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.rlds.errors import RecordError, RldsError
from pipeline.rlds.example import Record
from pipeline.rlds.folders import RldsSet, record_files
from pipeline.rlds.tfrecord import read_record, record_offsets


@dataclass(frozen=True)
class EpisodeLocation:
    split: str  # train or val
    path: Path  # its record file
    index: int  # its record's number in the file
    position: int  # TFRecord: byte offset; ArrayRecord: the record index


def _positions(path: Path, file_format: str) -> Iterator[int]:
    if file_format == "tfrecord":
        yield from record_offsets(path)
        return
    try:
        reader = _array_reader(path)
    except RecordError:
        yield 0  # reading it then says why the file is unusable
        return
    try:
        yield from range(reader.num_records())
    finally:
        reader.close()


def episodes(rset: RldsSet) -> Iterator[EpisodeLocation]:
    """Every episode of the set's train and val splits, file by file, in record order."""
    for split, path in record_files(rset):
        for index, position in enumerate(_positions(path, rset.file_format)):
            yield EpisodeLocation(split, path, index, position)


def _array_reader(path: Path):
    try:
        from array_record.python.array_record_module import ArrayRecordReader
    except ImportError:
        raise RldsError(
            f"{path.parent} is stored as ArrayRecord, which needs the rlds extra: "
            "pip install 'vla-shards[rlds]'"
        ) from None
    try:
        # No read-ahead: each worker reads one record of the file, wherever it is.
        return ArrayRecordReader(str(path), "readahead_buffer_size:0")
    except RuntimeError as e:
        raise RecordError(f"unreadable ArrayRecord file ({e})") from None


def read_episode(rset: RldsSet, path: Path, position: int) -> Record:
    """One episode's record, checked (checksums) and split into steps."""
    if rset.file_format == "tfrecord":
        with open(path, "rb") as f:
            data = read_record(f, position)
    else:
        reader = _array_reader(path)
        try:
            data = reader.read([position])[0]
        except (RuntimeError, IndexError) as e:
            raise RecordError(f"record {position} unreadable ({e})") from None
        finally:
            reader.close()
    return Record(data, rset.features)
