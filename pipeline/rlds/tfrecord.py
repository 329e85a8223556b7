"""TFRecord framing: find each record's byte offset, and read one record with both CRCs checked.

A record is `uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)`,
little-endian. Finding records reads only their 12-byte headers, so listing a set of
hundreds of GB seeks instead of reading; a worker then reads one record at its offset.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path

import google_crc32c

from pipeline.rlds.errors import RecordError

HEADER = 12  # length (8) and its checksum (4)
FOOTER = 4  # the data's checksum
_MASK_DELTA = 0xA282EAD8
# A record longer than this is a corrupt length field that happened to pass its checksum
# (one in 2**32) or a set no machine could hold one episode of.
MAX_RECORD = 1 << 40


def masked_crc(data: bytes) -> int:
    """TFRecord's masked CRC32C: rotated right by 15 bits plus a constant, modulo 2**32."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def _header(data: bytes, offset: int) -> int:
    """The data length a 12-byte header gives, its checksum checked."""
    if len(data) < HEADER:
        raise RecordError(f"record at byte {offset} is truncated (header cut short)")
    length, crc = struct.unpack("<QI", data)
    if masked_crc(data[:8]) != crc:
        raise RecordError(f"record at byte {offset}: its length fails its checksum (corrupt file)")
    if length > MAX_RECORD:
        raise RecordError(f"record at byte {offset} claims {length} bytes (corrupt file)")
    return length


def record_offsets(path: Path) -> Iterator[int]:
    """The byte offset of every record of a TFRecord file, reading only headers.

    A record that cannot be framed (its length fails its checksum, or it runs past the end)
    is still yielded, and ends the scan: reading it raises the RecordError that says why, so
    the problem costs that record alone and the records before it convert.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        offset = 0
        while offset < size:
            yield offset
            f.seek(offset)
            try:
                length = _header(f.read(HEADER), offset)
            except RecordError:
                return
            offset += HEADER + length + FOOTER
            if offset > size:
                return


def read_record(f, offset: int) -> bytes:
    """The data of the record at `offset` of an open binary file, both checksums checked."""
    f.seek(offset)
    length = _header(f.read(HEADER), offset)
    data = f.read(length)
    footer = f.read(FOOTER)
    if len(data) < length or len(footer) < FOOTER:
        raise RecordError(
            f"record at byte {offset} is truncated ({HEADER + len(data) + len(footer)} of "
            f"{HEADER + length + FOOTER} bytes present)"
        )
    if masked_crc(data) != struct.unpack("<I", footer)[0]:
        raise RecordError(f"record at byte {offset}: its data fails its checksum (corrupt file)")
    return data
