"""--precision: fp32 by default; bf16 is OpenVLA-OFT's forward and targets, with float32
master weights, on any device."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from common.errors import ConfigError
from trainer.run.step import autocast, loss_targets
from trainer.run.train_config import TrainConfig


def test_bf16_computes_under_bf16_autocast_on_the_cpu_and_fp32_stays_exact():
    layer = nn.Linear(4, 3)  # float32 weights: the master copy the optimizer updates
    x = torch.randn(2, 4)
    with autocast(torch.device("cpu"), "bf16"):
        assert layer(x).dtype == torch.bfloat16
    with autocast(torch.device("cpu"), "fp32"):
        assert layer(x).dtype == torch.float32
        torch.testing.assert_close(layer(x), x @ layer.weight.T + layer.bias, rtol=0, atol=0)
    assert layer.weight.dtype == torch.float32


def test_bf16_rounds_the_targets_as_ofts_loss_does_and_fp32_keeps_them():
    actions = torch.tensor([[0.1234567, -0.7654321, 1.0 / 3.0]])
    assert torch.equal(loss_targets(actions, "fp32"), actions)
    rounded = loss_targets(actions, "bf16")
    assert rounded.dtype == torch.float32
    assert torch.equal(rounded, actions.to(torch.bfloat16).float())
    assert not torch.equal(rounded, actions)


def test_precision_is_checked_and_fp32_is_the_default():
    assert TrainConfig(shards=("x",)).precision == "fp32"
    with pytest.raises(ConfigError, match="--precision must be one of fp32, bf16"):
        TrainConfig(shards=("x",), precision="fp16")
