"""Our streaming tar reader against Python's tarfile, on every format tarfile writes."""

from __future__ import annotations

import io
import tarfile

import pytest

from shards.samples import ShardReadError, iter_raw_samples
from shards.tar import TarFormatError, iter_members

MEMBERS = {
    "ep_000001.head.jpg": b"\xff\xd8jpeg" * 100,
    "ep_000001.meta.json": b"{}",
    "a/" + "deep-" * 30 + "name_000002.actions.npy": b"n" * 513,  # needs a long-name record
    "épisode_000003.meta.json": b"non-ascii",
    "empty_000004.meta.json": b"",
}


def archive(fmt: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        folder = tarfile.TarInfo("a")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        for name, data in MEMBERS.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("ep_000001.link.jpg")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    return buf.getvalue()


# Plain ustar can hold neither the long nor the non-ASCII name; pax writes ustar headers
# for every member that fits one, so it covers plain ustar too.
@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_regular_members_match_tarfile(fmt: int) -> None:
    data = archive(fmt)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        expected = [(m.name, tar.extractfile(m).read()) for m in tar if m.isreg()]
    assert list(iter_members(io.BytesIO(data))) == expected
    assert len(expected) == len(MEMBERS)


def test_short_reads_of_a_network_stream_are_handled() -> None:
    class Trickle(io.BytesIO):
        def read(self, n: int = -1) -> bytes:
            return super().read(min(n, 7) if n > 0 else n)

    data = archive(tarfile.PAX_FORMAT)
    assert list(iter_members(Trickle(data))) == list(iter_members(io.BytesIO(data)))


@pytest.mark.parametrize("cut", [100, 512, 1024, 1536 + 10])
def test_a_truncated_stream_is_an_error(cut: int) -> None:
    data = archive(tarfile.PAX_FORMAT)
    with pytest.raises(TarFormatError):
        list(iter_members(io.BytesIO(data[:cut])))


def test_a_corrupt_header_is_an_error() -> None:
    data = bytearray(archive(tarfile.PAX_FORMAT))
    data[520] ^= 0xFF  # inside the second header's name: its checksum no longer holds
    with pytest.raises(TarFormatError, match="checksum"):
        list(iter_members(io.BytesIO(bytes(data))))


def test_raw_samples_group_by_key_and_report_garbage() -> None:
    samples = list(iter_raw_samples(io.BytesIO(archive(tarfile.PAX_FORMAT)), "x.tar"))
    assert [s["__key__"] for s in samples][:2] == ["ep_000001", "a/" + "deep-" * 30 + "name_000002"]
    assert set(samples[0]) == {"__key__", "head.jpg", "meta.json"}
    with pytest.raises(ShardReadError, match="x.tar"):
        list(iter_raw_samples(io.BytesIO(b"not a tar at all" * 100), "x.tar"))
