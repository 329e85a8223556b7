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
MIB = 1024**2


@dataclass(frozen=True)
class Depth:
    """How many Llama layers and ViT blocks a model at openvla-7b's widths has."""

    llm_layers: int
    dinov2_blocks: int
    siglip_blocks: int

    def __post_init__(self) -> None:
        if min(self.llm_layers, self.dinov2_blocks, self.siglip_blocks) < 2:
            raise ValueError("each tower runs all but its last block: give at least 2 of each")


OPENVLA_7B = Depth(llm_layers=32, dinov2_blocks=24, siglip_blocks=27)
SLIM_7B = Depth(llm_layers=2, dinov2_blocks=2, siglip_blocks=2)

# Measured on the slim 7B by `python -m bench.slim7b` (trainer/model's own network at
# openvla-7b's widths, LoRA r=32 on every linear layer that runs, the 14-dim L1 head). One
# module of each kind: frozen and trainable parameters; "rest" is everything outside the Llama
# layers and ViT blocks (embeddings, lm_head, patch embeddings, projector, norms, the head).
# The 7B's counts follow by depth (tests/test_memory_plan.py checks them against
# tests/assets/openvla_7b_weights.json and the published LoRA and head counts).
LLM_LAYER_PARAMS, LLM_LAYER_LORA = 202_383_360, 2_498_560
DINOV2_BLOCK_PARAMS, DINOV2_BLOCK_LORA = 12_598_272, 524_288
SIGLIP_BLOCK_PARAMS, SIGLIP_BLOCK_LORA = 15_239_504, 570_368
SLIM_REST_PARAMS, SLIM_REST_TRAINABLE = 351_144_528, 269_771_534
# What one forward under bf16 autocast (bf16 base, float32 LoRA and head) leaves for
# backward, per sample, at 2 images and 644 tokens, by `python -m bench.slim7b` on the CPU:
# the bytes autograd saves in one Llama layer, one DINOv2 and one SigLIP block that run, and
# outside them; and a layer's input, which is all gradient checkpointing keeps of a layer until
# backward recomputes it. The bf16 copies autocast makes of the trainable weights are saved
# once per batch (WEIGHT_CASTS), not per sample.
LLM_LAYER_SAVED = round(125.04 * MIB)
DINOV2_BLOCK_SAVED = round(17.50 * MIB)
SIGLIP_BLOCK_SAVED = round(18.69 * MIB)
REST_SAVED = round(46.86 * MIB)
LLM_LAYER_INPUT = round(5.03 * MIB)
DINOV2_BLOCK_INPUT = round(1.02 * MIB)
SIGLIP_BLOCK_INPUT = round(1.12 * MIB)
WEIGHT_CASTS = round(525.67 * MIB)
ADAPTER_BYTES = {"float32": 4, "bfloat16": 2}  # per trainable value
HEAD_14_PARAMS = 268_644_366  # the L1 head for 14 action dims, within SLIM_REST_TRAINABLE


@dataclass(frozen=True)
class MemoryRows:
    """One run's estimate, in bytes, part by part. Not in it: the CUDA context, kernels'
    workspaces and the gradients backward holds for a moment, which a CPU cannot measure."""

    weights: int
    lora: int
    head: int
    optimizer: int
    activations: int

    @property
    def total(self) -> int:
        return self.weights + self.lora + self.head + self.optimizer + self.activations


def parameters(depth: Depth) -> tuple[int, int]:
    """Frozen parameters and trainable ones (LoRA and head) at `depth`; the last block of
    each tower is loaded but never runs, so it gets no LoRA."""
    frozen = SLIM_REST_PARAMS + (
        depth.llm_layers * LLM_LAYER_PARAMS
        + depth.dinov2_blocks * DINOV2_BLOCK_PARAMS
        + depth.siglip_blocks * SIGLIP_BLOCK_PARAMS
    )
    trainable = SLIM_REST_TRAINABLE + (
        depth.llm_layers * LLM_LAYER_LORA
        + (depth.dinov2_blocks - 1) * DINOV2_BLOCK_LORA
        + (depth.siglip_blocks - 1) * SIGLIP_BLOCK_LORA
    )
    return frozen, trainable


def activation_bytes(batch: int, grad_checkpointing: bool, depth: Depth = OPENVLA_7B) -> int:
    """Bytes held for backward at `batch`: every running layer's saved tensors, or with
    checkpointing every layer's input plus the largest layer's tensors while it recomputes."""
    llm, dinov2, siglip = depth.llm_layers, depth.dinov2_blocks - 1, depth.siglip_blocks - 1
    if grad_checkpointing:
        per_sample = (
            llm * LLM_LAYER_INPUT
            + dinov2 * DINOV2_BLOCK_INPUT
            + siglip * SIGLIP_BLOCK_INPUT
            + max(LLM_LAYER_SAVED, DINOV2_BLOCK_SAVED, SIGLIP_BLOCK_SAVED)
        )
    else:
        per_sample = llm * LLM_LAYER_SAVED + dinov2 * DINOV2_BLOCK_SAVED
        per_sample += siglip * SIGLIP_BLOCK_SAVED
    return batch * (per_sample + REST_SAVED) + WEIGHT_CASTS


def estimate(
    batch: int, grad_checkpointing: bool, adapters: str = "float32", depth: Depth = OPENVLA_7B
) -> MemoryRows:
    """The model at `depth` and `batch` per GPU: bf16 base; LoRA r=32 and the head in
    `adapters` (float32: vla-train's master weights, either --precision; bfloat16: OFT's own
    scripts) with their gradients and AdamW's two moments."""
    if adapters not in ADAPTER_BYTES:
        raise ValueError(f"adapters must be one of {sorted(ADAPTER_BYTES)}, got {adapters!r}")
    size = ADAPTER_BYTES[adapters]
    frozen, trainable = parameters(depth)
    return MemoryRows(
        weights=frozen * 2,
        lora=(trainable - HEAD_14_PARAMS) * size * 2,  # the values and their gradients
        head=HEAD_14_PARAMS * size * 2,
        optimizer=trainable * size * 2,
        activations=activation_bytes(batch, grad_checkpointing, depth),
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
    head = f"--batch-size {batch} needs at least {need / GIB:.0f} GiB for the 7B but the {have}"
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
