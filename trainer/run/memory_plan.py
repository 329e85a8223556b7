"""GPU memory of a 7B fine-tuning run, part by part: a pure estimate and the batch that fits."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from common.errors import ConfigError
from trainer.model.model_config import BASE_7B_RANDOM, BASE_7B_SLIM, BASE_TINY
from trainer.run.train_config import TrainConfig

GIB = 1024**3
# Parameters of openvla-7b (tests/assets/openvla_7b_weights.json), of LoRA r=32 on every
# linear layer the forward pass runs (trainer/model/lora.py), and of the L1 head for 14 action
# dims (tests/test_memory_plan.py recounts it).
BASE_7B_PARAMS = 7_541_237_184
LORA_7B_R32_PARAMS = 107_969_280
HEAD_14_PARAMS = 268_644_366
LLM_LAYERS, DINOV2_BLOCKS_RUN, SIGLIP_BLOCKS_RUN = 32, 23, 26  # towers stop before their last
# Bytes autograd keeps per sample at the 7B's widths, 2 images and 650 tokens under bf16
# autocast with a frozen bf16 base (weights are kept, not inputs; LoRA keeps its input), counted
# from the tensors each module saves, in units of one bf16 (tokens x width) tensor: a Llama
# layer 21.75 (two fp32 RMSNorm inputs 4, the normed inputs 2, q/k/v/out of flash or
# memory-efficient attention 4, o_proj's input 1, SiLU's input, both factors of the product and
# down_proj's input 4 x 11008/4096), a ViT block 19 per image (fp32 LayerNorm inputs 4, qkv and
# fc1 inputs 2, attention 4, proj 1, GELU and fc2 inputs 8), and the rest (pixels, projector,
# final norm, head). bench/slim7b.py measures the same on the slim 7B (saved tensors per module).
LLM_LAYER_BYTES = 116_000_000
DINOV2_BLOCK_BYTES = 20_000_000
SIGLIP_BLOCK_BYTES = 22_000_000
REST_BYTES = 45_000_000
# With gradient checkpointing a layer keeps only its input (650 x 4096 bf16) until backward
# recomputes it, one layer at a time.
LLM_CHECKPOINT_BYTES = 650 * 4096 * 2
TOWER_CHECKPOINT_BYTES = 2 * 257 * (1024 + 1152) * 2
# CUDA context, cuBLAS/cuDNN workspaces, backward's transient gradients and the caching
# allocator's slack: not measurable on a CPU, so an allowance; with it the estimate lands within
# 2 GiB of the H100 anchor (batch 8: 60 GiB measured, batch 16 out of memory).
OVERHEAD_BYTES = 3 * GIB
ADAPTER_BYTES = {"float32": 4, "bfloat16": 2}  # per trainable value: weight, grad, 2 Adam moments


@dataclass(frozen=True)
class MemoryRows:
    """One run's estimate, in bytes, part by part."""

    weights: int
    lora: int
    head: int
    optimizer: int
    activations: int
    overhead: int

    @property
    def total(self) -> int:
        return (
            self.weights + self.lora + self.head + self.optimizer + self.activations + self.overhead
        )


def activation_bytes(batch: int, grad_checkpointing: bool) -> int:
    """Bytes held for backward at `batch`: every layer's saved tensors, or with checkpointing
    every layer's input plus the largest layer recomputed at once."""
    if not grad_checkpointing:
        per_sample = (
            LLM_LAYERS * LLM_LAYER_BYTES
            + DINOV2_BLOCKS_RUN * DINOV2_BLOCK_BYTES
            + SIGLIP_BLOCKS_RUN * SIGLIP_BLOCK_BYTES
            + REST_BYTES
        )
        return batch * per_sample
    kept = (
        LLM_LAYERS * LLM_CHECKPOINT_BYTES
        + (DINOV2_BLOCKS_RUN + SIGLIP_BLOCKS_RUN) * TOWER_CHECKPOINT_BYTES
        + REST_BYTES
        + LLM_LAYER_BYTES
    )
    return batch * kept


def estimate(batch: int, grad_checkpointing: bool, adapters: str = "float32") -> MemoryRows:
    """The 7B at `batch` per GPU: bf16 base, LoRA r=32 and head in `adapters` with AdamW."""
    if adapters not in ADAPTER_BYTES:
        raise ValueError(f"adapters must be one of {sorted(ADAPTER_BYTES)}, got {adapters!r}")
    size = ADAPTER_BYTES[adapters]
    return MemoryRows(
        weights=BASE_7B_PARAMS * 2,
        lora=LORA_7B_R32_PARAMS * size * 2,  # the values and their gradients
        head=HEAD_14_PARAMS * size * 2,
        optimizer=(LORA_7B_R32_PARAMS + HEAD_14_PARAMS) * size * 2,  # AdamW's two moments
        activations=activation_bytes(batch, grad_checkpointing),
        overhead=OVERHEAD_BYTES,
    )


def largest_batch(gpu_bytes: int, grad_checkpointing: bool, adapters: str = "float32") -> int:
    """The largest batch whose estimate fits `gpu_bytes`; 0 when not even batch 1 fits."""
    batch = 0
    while estimate(batch + 1, grad_checkpointing, adapters).total <= gpu_bytes:
        batch += 1
    return batch


def check_batch_fits(
    batch: int, grad_accum: int, grad_checkpointing: bool, gpu_bytes: int, gpu_name: str
) -> None:
    """Refuse a 7B run the estimate says cannot fit, naming the batch and --grad-accum that
    keep the same effective batch (or the largest batch, when none divides it)."""
    need = estimate(batch, grad_checkpointing).total
    if need <= gpu_bytes:
        return
    have = f"{gpu_name} has {gpu_bytes / GIB:.0f} GiB"
    head = f"--batch-size {batch} needs about {need / GIB:.0f} GiB for the 7B but the {have}"
    fits = largest_batch(gpu_bytes, grad_checkpointing)
    if fits == 0:
        hint = "" if grad_checkpointing else "; add --grad-checkpointing"
        raise ConfigError(f"{head}: not even batch 1 fits{hint}")
    total = batch * grad_accum
    divisor = max(b for b in range(1, fits + 1) if total % b == 0)
    advice = f"use --batch-size {divisor} --grad-accum {total // divisor}"
    if not grad_checkpointing and largest_batch(gpu_bytes, True) >= batch:
        advice += f", or keep batch {batch} with --grad-checkpointing"
    raise ConfigError(f"{head}: {advice} (the same {total} samples per step)")


def is_7b(base: str) -> bool:
    """openvla-7b's size: the random 7B, a hub id (fetched later, so not yet readable), or a
    folder whose config.json keeps Llama-2-7B's width and depth (LlamaConfig's defaults)."""
    if base == BASE_7B_RANDOM:
        return True
    if base in (BASE_TINY, BASE_7B_SLIM):
        return False
    config = Path(base).expanduser() / "config.json"
    if not config.is_file():
        return not Path(base).expanduser().exists()
    try:
        text = json.loads(config.read_text()).get("text_config", {})
    except (ValueError, AttributeError):
        return False  # loading it will say what is wrong with it
    return text.get("hidden_size", 4096) == 4096 and text.get("num_hidden_layers", 32) == 32


def check_gpu_memory(cfg: TrainConfig, device: torch.device) -> None:
    """Refuse, before any weight is read, a 7B run on a GPU too small for its batch."""
    if device.type != "cuda" or not is_7b(cfg.base):
        return
    props = torch.cuda.get_device_properties(device)
    check_batch_fits(
        cfg.batch_size, cfg.grad_accum, cfg.grad_checkpointing, props.total_memory, props.name
    )
