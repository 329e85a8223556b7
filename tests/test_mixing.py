"""Mixing shard sets: SOURCE:WEIGHT, draws by weight, own stats per set, checks, exact resume."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from shard_fixtures import write_toy_shards
from train_fixtures import straight_and_resumed, stream_epochs

from shards.mixture import open_mixture, parse_source
from shards.reader import StreamConfig, StreamState, make_loader
from shards.source import open_shard_set
from stats.normalize import bounds, normalize
from trainer.cli import main
from trainer.data.batches import BatchPrep
from trainer.run.loop import train
from trainer.run.metrics import read_metrics
from trainer.run.train_config import ConfigError, TrainConfig

TINY = {"base": "tiny", "lora_rank": 4, "device": "cpu", "workers": 0}


@pytest.fixture
def two_sets(tmp_path):
    """Set "near" (actions x1) and set "far" (actions x10), 4 train shards of 8 each."""
    near = write_toy_shards(tmp_path / "near", steps=8, dataset="near")
    far = write_toy_shards(tmp_path / "far", steps=8, dataset="far", action_scale=10, seed=1)
    return near, far


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [
        ("sets/a", ("sets/a", 1.0)),
        ("sets/a:0.3", ("sets/a", 0.3)),
        ("sets/v:2/x", ("sets/v:2/x", 1.0)),
        ("s3://b/p/", ("s3://b/p/", 1.0)),
        ("s3://b/p/:2", ("s3://b/p/", 2.0)),
        ("https://host:8080/p/", ("https://host:8080/p/", 1.0)),
        ("https://host:8080/p/:0.5", ("https://host:8080/p/", 0.5)),
        ("http://127.0.0.1:8000", ("http://127.0.0.1:8000", 1.0)),
        ("http://[::1]:8000", ("http://[::1]:8000", 1.0)),
        ("https://host:8080:3", ("https://host:8080", 3.0)),
    ],
)
def test_only_a_trailing_number_that_is_no_port_is_a_weight(spec, parsed):
    assert parse_source(spec) == parsed


def test_weights_must_be_positive():
    for spec in ("a:0", "a:-1", "a:nan"):
        with pytest.raises(ConfigError, match="--shards .*number above 0"):
            TrainConfig(shards=(spec,))
    # train_config.json from before mixing held one string.
    assert TrainConfig(shards="a:2").sources == [("a", 2.0)]


def test_draws_follow_the_weights_and_batches_mix_sets(two_sets):
    near, far = two_sets
    mixture = open_mixture([(str(near), 1.0), (str(far), 3.0)])
    cfg = StreamConfig(batch_size=16, shuffle_buffer=8)
    batches = list(itertools.islice(iter(make_loader(mixture, cfg)), 60))
    sets = torch.cat([b["sets"] for b in batches])
    assert abs(sets.float().mean().item() - 0.75) < 0.05  # 960 draws, sd 0.014
    # Set "far" (32 train samples) went round many times more often than set "near".
    near_epoch, far_epoch = (e for e, _ in batches[-1]["position"].sets)
    assert far_epoch > 2 * near_epoch >= 2 * 5
    # Each sample's actions come from its own set: "far" ones are ten times larger.
    peak = torch.stack([b["actions"].abs().amax(dim=(1, 2)) for b in batches]).flatten()
    assert peak[sets == 0].max() < 2 < peak[sets == 1].min()


def test_resume_reproduces_a_mixed_stream(two_sets):
    mixture = open_mixture([(str(two_sets[0]), 1.0), (str(two_sets[1]), 3.0)])
    cfg = StreamConfig(batch_size=4, shuffle_buffer=6, workers=2)
    straight = list(itertools.islice(iter(make_loader(mixture, cfg)), 40))
    state = StreamState()
    for batch in straight[:27]:
        state.update(batch)
    state = StreamState.from_dict(json.loads(json.dumps(state.to_dict())))
    resumed = list(itertools.islice(iter(make_loader(mixture, cfg, state)), 13))
    assert [b["keys"] for b in resumed] == [b["keys"] for b in straight[27:]]
    assert [b["sets"].tolist() for b in resumed] == [b["sets"].tolist() for b in straight[27:]]


def test_each_sample_is_normalized_with_its_own_sets_stats(two_sets):
    mixture = open_mixture([(str(two_sets[0]), 1.0), (str(two_sets[1]), 1.0)])
    stats = [s.stats.action for s in mixture.sets]
    prep = BatchPrep(stats, "bounds", torch.device("cpu"), False, torch.Generator())
    batch = next(iter(make_loader(mixture, StreamConfig(batch_size=32))))
    assert set(batch["sets"].tolist()) == {0, 1}
    moved = {**batch, "input_ids": torch.zeros(32, 1), "attention_mask": torch.ones(32, 1)}
    actions = prep(moved, train=False).actions
    assert actions.min() >= -1 and actions.max() <= 1
    for i, raw, got in zip(batch["sets"].tolist(), batch["actions"], actions, strict=True):
        want = normalize(raw.numpy(), bounds(stats[i], "bounds"))
        np.testing.assert_allclose(got.numpy(), want, atol=1e-6)


def _fails_with(args: list[str], text: str) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0
    assert text in result.output and len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output and result.exception.__class__ is SystemExit


def test_sets_that_cannot_mix_stop_with_one_line(two_sets, tmp_path):
    near, far = two_sets
    chunk8 = write_toy_shards(tmp_path / "c8", steps=8, chunk=8, dataset="c8")
    dim5 = write_toy_shards(tmp_path / "d5", steps=8, action_dim=5, dataset="d5")
    twin = write_toy_shards(tmp_path / "twin", steps=8, dataset="near")
    run = ["--run-dir", str(tmp_path / "run"), "--base", "tiny", "--device", "cpu"]
    for other, text in [
        (chunk8, f"{chunk8} has chunk 8 but {near} has 4"),
        (dim5, f"{dim5} has action_dim 5 but {near} has 3"),
        (twin, f"{near} and {twin} are both dataset 'near'"),
        (near, f"{near} is given twice"),
    ]:
        _fails_with(["--shards", str(near), "--shards", f"{other}:2", *run], text)
    _fails_with(["--shards", str(near), "--shards", f"{far}:0", *run], "number above 0")


def test_checkpoints_hold_every_sets_stats_and_validation_reports_each(two_sets, tmp_path):
    near, far = two_sets
    cfg = TrainConfig(
        shards=(str(near), f"{far}:3"), run_dir=tmp_path / "run", batch_size=4, max_steps=2,
        save_every=2, val_every=2, **TINY,
    )  # fmt: skip
    train(cfg)
    ckpt = cfg.run_dir / "step-2"
    stats = json.loads((ckpt / "stats.json").read_text())
    for name, root in (("near", near), ("far", far)):
        assert stats[name] == json.loads((root / "stats.json").read_text())[name]
    saved = json.loads((ckpt / "train_config.json").read_text())
    assert saved["shards"] == [str(near), f"{far}:3"]
    assert [(m["dataset"], m["weight"]) for m in saved["mixture"]] == [("near", 1), ("far", 3)]
    # Each set's 8-step val episode less its last chunk-1 (--episode-tail drop, the default).
    assert [r["samples"] for r in read_metrics(cfg.run_dir, "val")] == [(8 - 3) + (8 - 3)]
    assert [r["samples"] for r in read_metrics(cfg.run_dir, "val/far")] == [8 - 3]
    # Other weights would make another data order: resuming with them is refused.
    result = CliRunner().invoke(main, ["--resume", str(cfg.run_dir), "--shards", str(near),
                                       "--shards", f"{far}:2", "--max-steps", "3"])  # fmt: skip
    assert result.exit_code != 0 and "weight 2" in result.output


def test_resume_logs_the_same_losses_as_a_straight_mixed_run(two_sets, tmp_path):
    near, far = two_sets
    common = dict(shards=(str(near), f"{far}:3"), batch_size=2, seed=3, save_every=1000, **TINY)
    common["workers"] = 2
    a, b = straight_and_resumed(tmp_path, 16, **common)
    # Each worker streams 10 samples of a set an epoch; it draws about 12 from "far" in all,
    # so "far" moves to its next epoch after the step-8 checkpoint.
    assert stream_epochs(tmp_path / "halves" / "step-8") == [0, 0, 0, 0]
    assert max(stream_epochs(tmp_path / "halves" / "step-16")) >= 1
    assert [r["step"] for r in b] == list(range(1, 17))
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], abs=1e-6)


def test_a_stream_state_saved_before_mixing_still_resumes(toy_shards):
    # Set 0's shuffle seed [seed, epoch, stream, 0] is the old [seed, epoch, stream].
    assert np.random.default_rng([3, 1, 2, 0]).random() == np.random.default_rng([3, 1, 2]).random()
    shard_set, cfg = open_shard_set(toy_shards), StreamConfig(batch_size=4, shuffle_buffer=6)
    straight = list(itertools.islice(iter(make_loader(shard_set, cfg)), 20))
    old = {"positions": {"0": list(straight[9]["position"].sets[0])}, "batches": 10,
           "bad_shards": [], "bad_samples": []}  # fmt: skip
    state = StreamState.from_dict(old)
    resumed = list(itertools.islice(iter(make_loader(shard_set, cfg, state)), 10))
    assert [b["keys"] for b in resumed] == [b["keys"] for b in straight[10:]]
