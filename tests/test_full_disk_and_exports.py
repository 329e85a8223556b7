"""A disk that really fills up under training and export, and exports racing for one OUT."""

from __future__ import annotations

import shutil

import pytest
from fault_fixtures import TINY, cli, fails_with, fill, small_filesystem, train_two_steps, vla_train
from safetensors.torch import load_file

from trainer.run.checksums import verify_checkpoint


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_two_steps(tmp_path_factory.mktemp("trained"))


def test_a_full_disk_while_training_is_one_line_and_keeps_the_last_checkpoint(trained, tmp_path):
    _, shards = trained
    with small_filesystem(tmp_path / "disk", "1600k") as disk:  # room for one tiny checkpoint
        run_dir = disk / "run"
        result = cli("--shards", str(shards), "--run-dir", str(run_dir), *TINY, "--workers", "0",
                     "--max-steps", "3", "--save-every", "1")  # fmt: skip
        fails_with(result, f"{run_dir}: not enough space to write step-2: it needs about ")
        assert "Traceback" not in result.output
        assert sorted(p.name for p in run_dir.iterdir() if "step" in p.name) == ["step-1"]
        assert verify_checkpoint(run_dir / "step-1")


def test_a_full_disk_while_exporting_is_one_line_and_leaves_nothing(trained, tmp_path):
    run_dir, _ = trained
    with small_filesystem(tmp_path / "disk", "1m") as disk:
        fill(disk, 300_000)
        for target in ("oft", "merged"):
            result = cli("export", str(run_dir / "step-2"), str(disk / "out"), "--to", target)
            fails_with(result, f"{disk}: not enough space to write {disk / 'out'}: it needs ")
            assert sorted(p.name for p in disk.iterdir()) == ["filler"]


def test_two_exports_into_one_out_one_is_written_whole_and_the_other_refused(trained, tmp_path):
    run_dir, _ = trained
    out = tmp_path / "out"
    exports = [vla_train("export", str(run_dir / f"step-{n}"), str(out)) for n in (1, 2)]
    results = [(p.wait(timeout=300), p.stdout.read()) for p in exports]
    written = [n for n, (code, text) in zip((1, 2), results, strict=True) if code == 0]
    assert len(written) == 1, results
    refused = results[2 - written[0]]
    assert refused[0] == 1 and refused[1].count("\n") == 1, refused
    assert "appeared while exporting" in refused[1] or "is not an empty folder" in refused[1]
    assert "Traceback" not in refused[1]
    step = run_dir / f"step-{written[0]}"
    assert (out / f"action_head--{written[0]}_checkpoint.pt").is_file()
    adapter = load_file(out / "lora_adapter" / "adapter_model.safetensors")
    saved = load_file(step / "adapter_model.safetensors")
    assert all(adapter[k].equal(saved[k]) for k in saved)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary folder left


def test_an_export_deletes_nothing_it_did_not_create(trained, tmp_path):
    run_dir, _ = trained
    other = tmp_path / ".out.export-tmp"  # the name every export once shared, now someone's
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    result = cli("export", str(run_dir / "step-2"), str(tmp_path / "out"), "--to", "merged")
    assert result.exit_code == 0, result.output
    assert (other / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.export-tmp", "out"]
    shutil.rmtree(other)
