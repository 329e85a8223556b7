"""A streaming tar member reader: regular files as (name, bytes), in order, nothing on disk.

Python's tarfile builds a TarInfo object per member and reads through several layers of
Python calls; for shards whose members are a few tens of kB that costs about as much as
decoding a JPEG. This reader parses the 512-byte headers directly (ustar, pax `path`
records and GNU long names: what tar, Python and webdataset writers produce), checks
every header's checksum, and treats an archive that ends without its end-of-archive
blocks as truncated.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

BLOCK = 512
_ZERO_BLOCK = bytes(BLOCK)
_REGULAR = (b"0", b"\0", b"7")
# No sample member comes near this; a header claiming more (a base-256 size can say 2**88)
# is corrupt or crafted, and reading it would exhaust memory or overflow.
MAX_MEMBER_BYTES = 1 << 30


class TarFormatError(Exception):
    """Not a tar stream, a corrupt header, or a stream cut short."""


def _read_exact(stream: IO[bytes], n: int) -> bytes:
    data = stream.read(n)
    if len(data) == n or not data:
        return data
    parts = [data]  # network streams may return short reads
    got = len(data)
    while got < n:
        more = stream.read(n - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _number(field: bytes) -> int:
    if field[:1] and field[0] & 0x80:  # GNU base-256 for sizes past 8 GiB
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0


def _checksum_ok(header: bytes) -> bool:
    stored = _number(header[148:156])
    # The checksum field itself counts as eight spaces.
    return sum(header[:148]) + sum(header[156:]) + 8 * 32 == stored


def _pax_path(data: bytes) -> str | None:
    """The `path` record of a pax extended header (records are `LEN key=value\\n`)."""
    path = None
    pos = 0
    while pos < len(data):
        space = data.index(b" ", pos)
        length = int(data[pos:space])
        key, _, value = data[space + 1 : pos + length - 1].partition(b"=")
        if key == b"path":
            path = value.decode("utf-8")
        pos += length
    return path


def iter_members(stream: IO[bytes]) -> Iterator[tuple[str, bytes]]:
    """(name, data) of every regular file member; other member types are skipped unread."""
    long_name: str | None = None
    while True:
        header = _read_exact(stream, BLOCK)
        if len(header) < BLOCK:
            raise TarFormatError("ends without the end-of-archive marker (truncated?)")
        if header == _ZERO_BLOCK:
            return
        if not _checksum_ok(header):
            raise TarFormatError("bad header checksum: corrupt or not a tar file")
        size = _number(header[124:136])
        if size > MAX_MEMBER_BYTES:
            raise TarFormatError(f"a member claims {size} bytes, over the 1 GiB limit")
        data = _read_exact(stream, size)
        padding = -size % BLOCK
        if len(data) < size or len(_read_exact(stream, padding)) < padding:
            raise TarFormatError("a member is cut short (truncated?)")
        kind = header[156:157]
        if kind == b"x":
            long_name = _pax_path(data) or long_name
            continue
        if kind == b"L":
            long_name = data.rstrip(b"\0").decode("utf-8")
            continue
        if kind in _REGULAR:
            name = long_name or _ustar_name(header)
            yield name, data
        long_name = None


def _ustar_name(header: bytes) -> str:
    name = header[:100].split(b"\0", 1)[0].decode("utf-8")
    if header[257:262] == b"ustar":
        prefix = header[345:500].split(b"\0", 1)[0].decode("utf-8")
        if prefix:
            return f"{prefix}/{name}"
    return name
