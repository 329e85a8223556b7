"""The trained policy: denormalized chunks from images, and `vla-train predict` against val L1."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from shard_fixtures import TOY_DATASET, nan_statistic, write_toy_shards

from shards.format import resize_square
from shards.stream import choose_instruction
from stats.compute import array_stats
from stats.normalize import bounds, denormalize, normalize
from trainer.cli import main
from trainer.data.batches import BatchPrep
from trainer.inference.checkpoint_info import read_checkpoint
from trainer.inference.policy import Policy
from trainer.inference.predict import PredictConfig, compare
from trainer.run.checkpoint import CheckpointError
from trainer.run.loop import train
from trainer.run.metrics import read_metrics
from trainer.run.train_config import TrainConfig

STEPS = 4


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny run of STEPS steps with image_aug on (so predict takes the centre crop) and a
    val L1 logged at its last step; returns (shards, run_dir)."""
    root = tmp_path_factory.mktemp("policy")
    shards = write_toy_shards(root / "shards")
    cfg = TrainConfig(
        shards=str(shards), run_dir=root / "run", base="tiny", lora_rank=4, device="cpu",
        workers=0, batch_size=4, max_steps=STEPS, val_every=STEPS, save_every=STEPS, seed=5,
    )  # fmt: skip
    train(cfg)
    return shards, cfg.run_dir


@pytest.fixture(scope="module")
def policy(trained):
    return Policy.load(trained[1] / f"step-{STEPS}", device="cpu")


def test_predict_reproduces_the_logged_val_l1(trained):
    shards, run_dir = trained
    report = compare(PredictConfig(run_dir / f"step-{STEPS}", str(shards), samples=0, device="cpu"))
    (val,) = read_metrics(run_dir, "val")
    # The 16-step val episode less its last chunk-1 (--episode-tail drop, the default).
    assert len(report.rows) == val["samples"] == 16 - 3
    # float32 sums agree to ~1e-7; reading with another instruction seed moves it ~2e-4.
    assert report.l1_normalized == pytest.approx(val["loss"], rel=1e-5)
    # Validation's instruction rule (run seed, epoch 0): the toy samples have three each.
    for row in report.rows:
        assert row.instruction == choose_instruction(
            ["pick up the cup", "grab the cup", "lift the cup"], 5, 0, row.key
        )
    assert len({row.instruction for row in report.rows}) > 1


def test_predict_gives_denormalized_float32_chunks(policy):
    rng = np.random.default_rng(0)
    head, wrist = (rng.integers(0, 256, (224, 224, 3), dtype=np.uint8) for _ in range(2))
    chunk = policy.predict({"head": head, "left_wrist": wrist, "unused": head}, "lift the cup")
    assert chunk.shape == (4, 3) and chunk.dtype == np.float32
    np.testing.assert_array_equal(policy.predict([head, wrist], "lift the cup"), chunk)
    normalized = policy.predict_normalized([[head, wrist]], ["lift the cup"])[0]
    np.testing.assert_allclose(chunk, denormalize(normalized, policy.bounds), rtol=1e-6)
    # Any camera resolution is resized the converter's way first.
    big = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    np.testing.assert_array_equal(
        policy.predict([big, wrist], "lift the cup"),
        policy.predict([resize_square(big, 224), wrist], "lift the cup"),
    )
    batch = policy.predict_batch([[head, wrist], [big, wrist]], ["lift the cup", "grab the cup"])
    assert batch.shape == (2, 4, 3)
    np.testing.assert_allclose(batch[0], chunk, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="no image for camera"):
        policy.predict({"head": head}, "lift the cup")
    with pytest.raises(ValueError, match="RGB uint8"):
        policy.predict([head.astype(np.float32), wrist], "lift the cup")


def test_predict_sees_what_validation_sees(policy, trained):
    """Random (not flat) images, so the centre crop of a run with image_aug matters."""
    rng = np.random.default_rng(2)
    images = torch.from_numpy(rng.integers(0, 256, (2, 2, 224, 224, 3), dtype=np.uint8))
    actions = torch.from_numpy(rng.normal(size=(2, 4, 3)).astype(np.float32))
    instructions = ["lift the cup", "grab the cup"]
    stats = read_checkpoint(trained[1] / f"step-{STEPS}").stats[TOY_DATASET].action
    moved = {"images": images, "actions": actions, "valid": torch.tensor([4, 2]),
             "sets": torch.zeros(2, dtype=torch.long), "keys": ["a", "b"],
             **policy.net.tokenize(instructions)}  # fmt: skip
    cpu = torch.device("cpu")
    for image_aug in (True, False):
        prep = BatchPrep([stats], policy.run.normalization, cpu, image_aug, torch.Generator())
        batch = prep(moved, train=False)
        with torch.no_grad():
            out = policy.net(batch.pixel_values, batch.input_ids, batch.attention_mask).numpy()
        if image_aug == policy.run.image_aug:
            np.testing.assert_allclose(policy.predict_normalized(images.numpy(), instructions), out)
            np.testing.assert_allclose(policy.normalize(actions.numpy()), batch.actions.numpy())
        else:
            assert not np.allclose(policy.predict_normalized(images.numpy(), instructions), out)


@pytest.mark.parametrize("normalization", ["bounds_q99", "bounds"])
def test_denormalize_inverts_normalize_in_range(normalization):
    rng = np.random.default_rng(1)
    rows = rng.normal(size=(500, 4)).astype(np.float32) * [1, 5, 0.1, 2]
    rows[:, 2] = 0.25  # a constant dimension
    b = bounds(array_stats(rows, no_normalize=[3]), normalization)
    inside = b.low + rng.uniform(0, 1, (50, 4)).astype(np.float32) * (b.high - b.low)
    inside[:, 3] = rng.normal(size=50) * 10  # not normalized: passes through both ways
    y = normalize(inside, b)
    np.testing.assert_allclose(y[:, 3], inside[:, 3])
    np.testing.assert_allclose(denormalize(y, b), inside, rtol=1e-5, atol=1e-5)


def test_a_checkpoint_with_several_datasets(trained, tmp_path):
    shards, run_dir = trained
    ckpt = tmp_path / "step-1"
    shutil.copytree(run_dir / f"step-{STEPS}", ckpt)
    entry = json.loads((ckpt / "stats.json").read_text())[TOY_DATASET]
    (ckpt / "stats.json").write_text(json.dumps({TOY_DATASET: entry, "other": entry}))
    info = read_checkpoint(ckpt)
    with pytest.raises(CheckpointError, match=r"several datasets \(other, toy\)"):
        info.select()
    with pytest.raises(CheckpointError, match="no statistics for dataset 'nope'"):
        info.select("nope")
    assert info.select("other") == "other"
    # predict picks the set's own dataset.
    result = CliRunner().invoke(main, ["predict", str(ckpt), "--shards", str(shards), "-n", "5",
                                       "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "stats of 'toy'" in result.output
    assert "mean L1 over the valid rows of 5 samples" in result.output
    assert "ep100_000004" in result.output and "ep100_000005" not in result.output


def _predict(ckpt, shards, *extra: str):
    args = ["predict", str(ckpt), "--shards", str(shards), "--device", "cpu", *extra]
    return CliRunner().invoke(main, args)


def _fails_with(result, text: str) -> None:
    assert result.exit_code != 0
    assert text in result.output, result.output
    assert "Traceback" not in result.output and result.exception.__class__ is SystemExit


def test_predict_cli_errors_are_one_line(trained, tmp_path):
    shards, run_dir = trained
    ckpt = run_dir / f"step-{STEPS}"
    _fails_with(_predict(tmp_path / "nowhere", shards), "no such checkpoint folder")
    _fails_with(_predict(run_dir, shards), f"pass one of its step-N folders, e.g. {ckpt}")
    partial = tmp_path / "partial"
    shutil.copytree(ckpt, partial)
    (partial / "action_head.safetensors").unlink()
    _fails_with(_predict(partial, shards), "missing action_head.safetensors")
    other = write_toy_shards(tmp_path / "wide", train_episodes=1, steps=4, action_dim=5)
    _fails_with(_predict(ckpt, other), "chunks of 4 x 5-dim actions, but")
    manifest = json.loads((shards / "manifest.json").read_text())
    one_camera = tmp_path / "one_camera"
    shutil.copytree(shards, one_camera)
    manifest["cameras"] = ["head"]
    (one_camera / "manifest.json").write_text(json.dumps(manifest))
    _fails_with(_predict(ckpt, one_camera), "no camera left_wrist, but")
    _fails_with(_predict(ckpt, shards, "-n", "-1"), "-n/--samples must not be negative")


def test_predict_refuses_nan_statistics_in_the_set_or_the_checkpoint(trained, tmp_path):
    shards, run_dir = trained
    ckpt = run_dir / f"step-{STEPS}"
    bad_set = nan_statistic(write_toy_shards(tmp_path / "nan"))
    _fails_with(_predict(ckpt, bad_set), f"{bad_set / 'stats.json'}: dataset 'toy': action.q99[1]")
    bad_ckpt = tmp_path / "ckpt"
    shutil.copytree(ckpt, bad_ckpt)
    nan_statistic(bad_ckpt)
    _fails_with(_predict(bad_ckpt, shards), f"{bad_ckpt / 'stats.json'}: dataset 'toy': action.q99")
