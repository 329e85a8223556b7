"""No `vla-data` command prints a traceback for a mistake a user can make; options are checked
before any work starts."""

from __future__ import annotations

import errno
import json
import shutil

import pytest
from click.testing import CliRunner
from episode_fixtures import leftovers, make_episodes, run_convert

import shards.writer
from pipeline.cli import main


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line_error(result, *fragments):
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.output.strip().splitlines()
    assert lines and lines[-1].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("made")
    make_episodes(root / "eps", episodes=3, steps=6)
    run_convert(root / "eps", root / "set", val_episodes=0)
    return root


def _copy(made, tmp_path, name="set"):
    shutil.copytree(made / "set", tmp_path / name)
    return tmp_path / name


@pytest.mark.parametrize("command", [["stats", "--verify"], ["preview", "-o", "{tmp}/p.png"]])
def test_a_truncated_shard_is_one_line(made, tmp_path, command):
    cut = _copy(made, tmp_path, "cut")
    shard = cut / "train-000000.tar"
    shard.write_bytes(shard.read_bytes()[:3000])
    args = [a.format(tmp=tmp_path) for a in command]
    assert_one_line_error(invoke(args[0], cut, *args[1:]), "train-000000.tar", "truncated")


def test_stats_verify_on_a_missing_shard_is_one_line(made, tmp_path):
    gone = _copy(made, tmp_path, "gone")
    (gone / "train-000000.tar").unlink()
    assert_one_line_error(invoke("stats", gone, "--verify"), "train-000000.tar")


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (["--seed", "-1"], "--seed"),
        (["--no-normalize-dims", "99"], "--no-normalize-dims"),
        (["--no-normalize-dims", "-2"], "--no-normalize-dims"),
        (["--cameras", "head,head"], "--cameras: head is named twice"),
        (["--workers", "0"], "--workers must be at least 1 (or auto)"),
        (["--workers", "many"], "--workers must be 'auto' or a whole number"),
    ],
)
def test_bad_convert_options_are_refused_before_any_encoding(
    made, tmp_path, monkeypatch, options, fragment
):
    import pipeline.convert.stages

    def no_encoding(*args, **kwargs):
        raise AssertionError("encoding started before the options were checked")

    monkeypatch.setattr(pipeline.convert.stages, "encode_episodes", no_encoding)
    # The last --workers given counts: the cases that test it override this one.
    result = invoke("convert", made / "eps", tmp_path / "out", "--quiet", "--workers", 1, *options)
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["preview", "{set}", "-n", "-3", "-o", "{tmp}/p.png"], "-n"),
        (["preview", "{set}", "-o", "{tmp}/nowhere/p.png"], "nowhere"),
        (["verify", "{set}", "--workers", "0"], "--workers must be at least 1"),
    ],
)
def test_bad_read_options_are_one_line(made, tmp_path, args, fragment):
    args = [a.format(set=made / "set", tmp=tmp_path) for a in args]
    assert_one_line_error(invoke(*args), fragment)


@pytest.mark.parametrize("command", ["verify", "info", "stats", "preview"])
def test_a_manifest_with_splits_as_a_list_is_refused(made, tmp_path, command):
    odd = _copy(made, tmp_path, "odd")
    manifest = json.loads((odd / "manifest.json").read_text())
    manifest["splits"] = []
    (odd / "manifest.json").write_text(json.dumps(manifest))
    assert_one_line_error(invoke(command, odd), "manifest.json", "splits")


def test_a_full_disk_during_convert_is_one_line_and_leaves_nothing(made, tmp_path, monkeypatch):
    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.tar"))

    monkeypatch.setattr(shards.writer.ShardWriter, "add", full)
    result = invoke("convert", made / "eps", tmp_path / "out", "--quiet", "--workers", 1)
    assert_one_line_error(result, "No space left on device")
    assert not (tmp_path / "out").exists() and leftovers(tmp_path / "out") == []


@pytest.mark.parametrize(
    "args, fragment",
    [(["--seed", "-1"], "--seed must not be negative"), (["--episodes", "0"], "at least 1")],
)
def test_generate_option_errors_are_one_line(tmp_path, args, fragment):
    assert_one_line_error(invoke("generate", tmp_path / "eps", *args), fragment)
    assert not (tmp_path / "eps").exists()
