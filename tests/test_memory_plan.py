"""The 7B's GPU memory estimate: its counts against the published 7B, its parts, the largest
batch and the refusal (all without a GPU: the device's memory is an argument)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from common.errors import ConfigError
from trainer.model.head import L1RegressionHead
from trainer.run.memory_plan import (
    GIB,
    HEAD_14_PARAMS,
    OPENVLA_7B,
    check_batch_fits,
    check_gpu_memory,
    estimate,
    is_7b,
    largest_batch,
    parameters,
)
from trainer.run.train_config import TrainConfig

H100 = round(79.11 * GIB)  # the total capacity CUDA reports for an H100 80 GB
H200 = round(139.5 * GIB)  # an H200 141 GB, approximately


def test_per_layer_counts_scale_to_the_published_7b():
    shapes = json.loads((Path(__file__).parent / "assets" / "openvla_7b_weights.json").read_text())
    frozen, trainable = parameters(OPENVLA_7B)
    assert frozen == sum(math.prod(shape) for shape in shapes["shapes"].values())
    # LoRA r=32 on every linear layer that runs (REFERENCE: 107,969,280) plus the head.
    assert trainable == 107_969_280 + HEAD_14_PARAMS


def test_the_plan_beside_the_h100_anchor():
    # Measured on one H100 (random 7B, LoRA r=32, bf16 autocast, 2 images, 650 tokens): batch 8
    # peaks at 60 GiB, batch 16 runs out of memory. The plan leaves out the CUDA context and
    # backward's passing gradients, so it stays under the first and still exceeds the GPU at
    # the second. Its figures are measured, not fitted: a failure here means they moved.
    assert 55 * GIB <= estimate(8, grad_checkpointing=False).total <= 60 * GIB
    assert estimate(16, grad_checkpointing=False).total > H100


def test_parts_and_what_checkpointing_and_bf16_adapters_save():
    full, checkpointed = estimate(8, False), estimate(8, True)
    assert full.weights == checkpointed.weights == 7_541_237_184 * 2
    assert checkpointed.activations < full.activations / 4
    half = estimate(8, False, adapters="bfloat16")
    assert half.head == full.head // 2 and half.activations == full.activations
    assert largest_batch(H200, True) > largest_batch(H200, False) > largest_batch(H100, False)
    with pytest.raises(ValueError, match="adapters"):
        estimate(8, False, adapters="float16")


def test_the_head_count_is_the_heads():
    with torch.device("meta"):
        head = L1RegressionHead(14, 4096)
    assert sum(p.numel() for p in head.parameters()) == HEAD_14_PARAMS


def test_refusal_names_the_batch_and_grad_accum_that_fit():
    check_batch_fits(8, 1, False, H100, "NVIDIA H100 80GB HBM3")  # fits: no error
    with pytest.raises(ConfigError) as refused:
        check_batch_fits(16, 2, False, H100, "NVIDIA H100 80GB HBM3")
    message = str(refused.value)
    # 12 fits an H100 without checkpointing; 8 is the largest that divides 16 x 2 samples.
    assert largest_batch(H100, False) == 12
    assert "use --batch-size 8 --grad-accum 4" in message and "(the same 32 samples" in message
    assert "--batch-size 16 needs at least 97 GiB" in message
    assert "NVIDIA H100 80GB HBM3 has 79 GiB" in message
    assert "keep batch 16 with --grad-checkpointing" in message
    with pytest.raises(ConfigError, match="not even batch 1 fits; add --grad-checkpointing"):
        check_batch_fits(1, 1, False, 16 * GIB, "small GPU")


def test_only_7b_bases_on_cuda_are_checked(tmp_path):
    small = tmp_path / "merged_tiny"
    small.mkdir()
    (small / "config.json").write_text(json.dumps({"text_config": {"hidden_size": 64}}))
    big = tmp_path / "openvla-7b"
    big.mkdir()
    (big / "config.json").write_text(json.dumps({"text_config": {"vocab_size": 32064}}))
    assert is_7b("openvla-7b-random") and is_7b("openvla/openvla-7b") and is_7b(str(big))
    assert not is_7b("tiny") and not is_7b("openvla-7b-slim") and not is_7b(str(small))
    # On the CPU nothing is refused, whatever the batch.
    cfg = TrainConfig(shards=("s",), base="openvla-7b-random", batch_size=64)
    check_gpu_memory(cfg, torch.device("cpu"))
