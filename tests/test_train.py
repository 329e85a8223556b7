"""Training on CPU with the tiny model: exact resume, checkpoints and the LR schedule."""

from __future__ import annotations

import json

import pytest
import torch
from shard_fixtures import write_toy_shards
from train_fixtures import straight_and_resumed, stream_epochs

from trainer.run import metrics
from trainer.run.checkpoint import STATE_FILE, checkpoints
from trainer.run.loop import train
from trainer.run.metrics import read_metrics
from trainer.run.step import build_scheduler
from trainer.run.train_config import ConfigError, TrainConfig

TINY = {"base": "tiny", "lora_rank": 8, "device": "cpu", "workers": 0}


def test_resume_logs_the_same_losses_as_a_straight_run(tmp_path, monkeypatch):
    # 4 shards of 5 samples (less the episode tails): two workers stream 10 samples an epoch
    # each, so the 7 steps after the step-7 checkpoint cross an epoch boundary.
    shards = write_toy_shards(tmp_path / "shards", steps=8)
    # A 4-step loss window is full, and has wrapped, when the checkpoint saves it.
    monkeypatch.setattr(metrics, "SMOOTH_STEPS", 4)
    common = dict(shards=str(shards), batch_size=2, seed=3, save_every=1000, **TINY)
    common.update(workers=2, warmup_steps=10)  # the restart must put each worker back on its stream
    a, b = straight_and_resumed(tmp_path, 14, **common)
    assert stream_epochs(tmp_path / "halves" / "step-7") == [0, 0]
    assert max(stream_epochs(tmp_path / "halves" / "step-14")) >= 1
    assert [r["step"] for r in b] == list(range(1, 15))
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], abs=1e-6)
    # The loss window carries over the restart too (it is in the checkpoint).
    assert [r["loss_smooth"] for r in a] == pytest.approx([r["loss_smooth"] for r in b], abs=1e-6)
    window = [r["loss"] for r in a[-4:]]
    assert a[-1]["loss_smooth"] == pytest.approx(sum(window) / len(window))
    # So does the scheduler: the warmup is still rising at the restart.
    assert [r["lr"] for r in a] == [r["lr"] for r in b] and a[6]["lr"] < a[7]["lr"] < a[9]["lr"]


def test_checkpoints_are_complete_and_pruned(toy_shards, tmp_path):
    cfg = TrainConfig(
        shards=str(toy_shards), run_dir=tmp_path / "run", batch_size=2, max_steps=7,
        save_every=2, keep=2, val_every=3, **TINY,
    )  # fmt: skip
    train(cfg)
    assert [step for step, _ in checkpoints(cfg.run_dir)] == [6, 7]
    last = cfg.run_dir / "step-7"
    names = {p.name for p in last.iterdir()}
    assert {"adapter_model.safetensors", "action_head.safetensors", "stats.json"} <= names
    assert {"train_config.json", STATE_FILE} <= names
    assert (last / "stats.json").read_text() == (toy_shards / "stats.json").read_text()
    state = torch.load(last / STATE_FILE, weights_only=True)
    assert state["step"] == 7 and state["ranks"][0]["data"]["batches"] == 7
    assert {"python", "numpy", "torch", "aug"} <= set(state["ranks"][0]["rng"])
    val = read_metrics(cfg.run_dir, "val")
    # The val episode's 16 steps less its last chunk-1 (--episode-tail drop, the default).
    assert [r["step"] for r in val] == [3, 6] and all(r["samples"] == 16 - 3 for r in val)
    record = json.loads((cfg.run_dir / "metrics.jsonl").read_text().splitlines()[0])
    assert {"loss", "curr_l1", "future_l1", "lr", "samples_per_s", "data_wait"} <= set(record)
    assert record["bad_shards"] == 0 and 0 <= record["data_wait"] <= 1


def test_warmup_composes_with_the_decay():
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = build_scheduler(opt, warmup_steps=4, decay_step=2)
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    # OFT's warmup: lr * (0.1 + 0.9 * min((i + 1) / warmup, 1)) at step i; then x0.1 decay.
    oft = [0.1 + 0.9 * min((i + 1) / 4, 1) for i in range(6)]
    assert lrs[:2] == pytest.approx(oft[:2]) and lrs[0] == pytest.approx(0.325)
    assert lrs[2:] == pytest.approx([oft[2] * 0.1, 0.1, 0.1, 0.1])


def test_config_rejects_bad_values_and_changes_on_resume(tmp_path):
    with pytest.raises(ConfigError, match="--batch-size"):
        TrainConfig(shards="s", batch_size=0)
    with pytest.raises(ConfigError, match="--shards is required"):
        TrainConfig()
    cfg = TrainConfig(shards="s", run_dir=tmp_path)
    with pytest.raises(ConfigError, match="--base, --lr cannot change on --resume"):
        cfg.resumed({"base": "tiny", "lr": 1.0, "max_steps": 9})
    assert cfg.resumed({"max_steps": 9}).max_steps == 9
