"""A shard set from elsewhere is data, never code: foreign members are ignored, never decoded."""

from __future__ import annotations

import io
import logging
import pickle
import tarfile
from pathlib import Path

from click.testing import CliRunner
from episode_fixtures import make_episodes, run_convert

from pipeline.cli import main as vla_data
from shards.reader import StreamConfig, make_loader
from shards.samples import iter_raw_samples
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
