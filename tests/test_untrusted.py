"""A shard set from elsewhere is data, never code: foreign members are ignored, never decoded."""

from __future__ import annotations

import io
import json
import logging
import pickle
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from episode_fixtures import make_episodes, run_convert

from pipeline.cli import main as vla_data
from shards.format import MANIFEST_FILE, META_MEMBER
from shards.manifest import ManifestError
from shards.reader import StreamConfig, make_loader
from shards.samples import ShardReadError, iter_raw_samples
from shards.source import open_shard_set


class _Trap:
    """Unpickling this creates the sentinel file: proof that something was unpickled."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return (Path.touch, (self.sentinel,))


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def poison(shard: Path, sentinel: Path) -> None:
    """Rewrite a shard with a pickle, a .pth, a symlink and a path-traversal member per sample."""
    with open(shard, "rb") as f:
        samples = list(iter_raw_samples(f, str(shard)))
    with tarfile.open(shard, "w") as tar:
        for raw in samples:
            key = raw["__key__"]
            for field, data in raw.items():
                if not field.startswith("__"):
                    _add(tar, f"{key}.{field}", data)
            _add(tar, f"{key}.payload.pyd", pickle.dumps(_Trap(sentinel)))
            _add(tar, f"{key}.weights.pth", pickle.dumps(_Trap(sentinel)))
            link = tarfile.TarInfo(f"{key}.link.jpg")
            link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(link)
            _add(tar, f"../../{key}.evil.txt", b"outside")


def test_foreign_members_are_warned_about_and_never_decoded(tmp_path: Path, caplog) -> None:
    make_episodes(tmp_path / "eps", episodes=2, steps=8)
    shards = tmp_path / "shards"
    run_convert(tmp_path / "eps", shards, val_episodes=0, image_size=224,
                cameras=("head", "left_wrist"))  # fmt: skip
    sentinel = tmp_path / "unpickled"
    poison(shards / "train-000000.tar", sentinel)

    config = StreamConfig(cameras=("head", "left_wrist"), batch_size=4, shuffle_buffer=0)
    with caplog.at_level(logging.WARNING):
        batch = next(iter(make_loader(open_shard_set(shards), config)))
    assert batch["images"].shape == (4, 2, 224, 224, 3)
    assert "payload.pyd" in caplog.text and "weights.pth" in caplog.text
    assert not sentinel.exists()
    assert not list(tmp_path.rglob("*evil*"))  # nothing extracted, inside or outside

    result = CliRunner().invoke(vla_data, ["verify", str(shards), "--workers", "1"])
    assert result.exit_code == 1
    assert "unexpected member(s) ['payload.pyd', 'weights.pth']" in result.output
    assert not sentinel.exists()


def _rewrite_shard(shard: Path, change) -> None:
    """Rewrite a shard with `change(key, field, data)` as each member's new bytes."""
    with open(shard, "rb") as f:
        samples = list(iter_raw_samples(f, str(shard)))
    with tarfile.open(shard, "w", format=tarfile.USTAR_FORMAT) as tar:
        for raw in samples:
            for field, data in raw.items():
                if not field.startswith("__"):
                    _add(tar, f"{raw['__key__']}.{field}", change(raw["__key__"], field, data))


def _huge_size_field(shard: Path) -> None:
    """The first member's size becomes the GNU base-256 number 2**80; the checksum still fits."""
    data = bytearray(shard.read_bytes())
    data[124:136] = b"\x80" + (2**80).to_bytes(11, "big")
    data[148:156] = b" " * 8
    data[148:156] = f"{sum(data[:512]):06o}\0 ".encode()
    shard.write_bytes(bytes(data))


@pytest.fixture
def small_set(tmp_path: Path) -> Path:
    make_episodes(tmp_path / "eps", episodes=2, steps=8)
    run_convert(tmp_path / "eps", tmp_path / "shards", val_episodes=0, shard_samples=8)
    return tmp_path / "shards"


def test_a_huge_base256_size_field_is_a_bad_shard_not_a_crash(small_set: Path) -> None:
    _huge_size_field(small_set / "train-000000.tar")
    with open(small_set / "train-000000.tar", "rb") as f, pytest.raises(ShardReadError):
        list(iter_raw_samples(f, "train-000000.tar"))

    config = StreamConfig(cameras=("head", "low"), batch_size=4, shuffle_buffer=0)
    batch = next(iter(make_loader(open_shard_set(small_set), config)))
    assert batch["bad_shards"] == ["train-000000.tar"]

    result = CliRunner().invoke(vla_data, ["verify", str(small_set), "--workers", "1"])
    assert result.exit_code == 1 and "train-000000.tar" in result.output
    assert not isinstance(result.exception, OverflowError)


def test_a_meta_json_that_is_not_an_object_is_a_bad_sample(small_set: Path) -> None:
    def array_meta(key, field, data):
        return b"[1, 2]" if field == META_MEMBER and key.endswith("_000003") else data

    for shard in small_set.glob("train-*.tar"):
        _rewrite_shard(shard, array_meta)
    config = StreamConfig(cameras=("head", "low"), batch_size=14, shuffle_buffer=0)
    batch = next(iter(make_loader(open_shard_set(small_set), config)))
    assert sorted(k.rsplit("/", 1)[1] for k in batch["bad_samples"]) == [
        "episode_0_000003",
        "episode_1_000003",
    ]
    result = CliRunner().invoke(vla_data, ["verify", str(small_set), "--workers", "1"])
    assert result.exit_code == 1 and "meta.json" in result.output
    assert isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("name", ["/etc/passwd", "../x.tar", "sub/train.tar", "..", ".hidden.tar"])
def test_a_manifest_naming_a_file_outside_the_set_is_refused(small_set: Path, name: str) -> None:
    manifest = json.loads((small_set / MANIFEST_FILE).read_text())
    manifest["splits"]["train"][0]["name"] = name
    (small_set / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match="shard name"):
        open_shard_set(small_set, check_files=False)
    result = CliRunner().invoke(vla_data, ["verify", str(small_set), "--workers", "1"])
    assert result.exit_code == 1 and "shard name" in result.output
    assert isinstance(result.exception, SystemExit)
