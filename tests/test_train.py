"""Training on CPU with the tiny model: exact resume, checkpoints and the LR schedule."""

from __future__ import annotations

import json

import pytest
import torch
from train_fixtures import straight_and_resumed

from trainer.checkpoint import STATE_FILE, checkpoints
from trainer.config import ConfigError, TrainConfig
from trainer.loop import train
from trainer.metrics import SMOOTH_STEPS, read_metrics
from trainer.step import build_scheduler

TINY = {"base": "tiny", "lora_rank": 8, "device": "cpu", "workers": 0}


def test_resume_logs_the_same_losses_as_a_straight_run(toy_shards, tmp_path):
    # Two workers: the restart must also put each worker back on its own stream.
    common = dict(shards=str(toy_shards), batch_size=2, seed=3, save_every=1000, **TINY)
    common["workers"] = 2
    a, b = straight_and_resumed(tmp_path, 120, **common)
    assert [r["step"] for r in b] == list(range(1, 121))
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], abs=1e-6)
    # The 50-step mean carries over the restart too (its window is in the checkpoint).
    assert [r["loss_smooth"] for r in a] == pytest.approx([r["loss_smooth"] for r in b], abs=1e-6)
    window = [r["loss"] for r in a[-SMOOTH_STEPS:]]
    assert a[-1]["loss_smooth"] == pytest.approx(sum(window) / len(window))
    assert [r["lr"] for r in a] == [r["lr"] for r in b]


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
