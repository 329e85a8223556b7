"""Model configuration: the user-facing ModelConfig, the built-in base specs and the load error."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from common.errors import UserError

BASE_TINY = "tiny"
BASE_7B_RANDOM = "openvla-7b-random"
BASE_7B_SLIM = "openvla-7b-slim"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def base_dtype(device: torch.device) -> str:
    """The frozen base's dtype on `device`: bf16 on CUDA halves the 7B's memory (OFT trains
    under bf16 autocast anyway); exact float32 on the CPU. LoRA and head are float32 either way."""
    return "bfloat16" if device.type == "cuda" else "float32"


DINOV2_TIMM_ID = "vit_large_patch14_reg4_dinov2.lvd142m"
SIGLIP_TIMM_ID = "vit_so400m_patch14_siglip_224"
# Tiny stand-ins: the same timm classes and flags, only narrower and shallower, and with
# 28 px patches (64 per image instead of 256): the sequence is then 4x shorter, which makes
# the tiny base about 2x faster on CPU, and a square a few patches wide is still well located.
TINY_DINOV2_ID = "vla-shards/tiny-dinov2"
TINY_SIGLIP_ID = "vla-shards/tiny-siglip"
TINY_PATCH = 28
TINY_TOWER_OVERRIDES = {
    TINY_DINOV2_ID: (
        DINOV2_TIMM_ID,
        {"embed_dim": 32, "depth": 3, "num_heads": 2, "patch_size": TINY_PATCH},
    ),
    TINY_SIGLIP_ID: (
        SIGLIP_TIMM_ID,
        {"embed_dim": 48, "depth": 3, "num_heads": 2, "patch_size": TINY_PATCH},
    ),
}
IMAGE_SIZE = 224
# The slim 7B: the same towers at full width, two blocks each (features come from the first).
SLIM_DINOV2_ID = "vla-shards/slim-dinov2"
SLIM_SIGLIP_ID = "vla-shards/slim-siglip"
SLIM_TOWER_BLOCKS = 2
SLIM_LLM_LAYERS = 2
TOWER_OVERRIDES = {
    **TINY_TOWER_OVERRIDES,
    SLIM_DINOV2_ID: (DINOV2_TIMM_ID, {"depth": SLIM_TOWER_BLOCKS}),
    SLIM_SIGLIP_ID: (SIGLIP_TIMM_ID, {"depth": SLIM_TOWER_BLOCKS}),
}

# The parts of openvla/openvla-7b's config.json that shape the network. Its text_config holds
# only the differences from LlamaConfig's defaults (which are Llama-2-7B's), so we overlay
# the same way the published model does.
OPENVLA_7B_SPEC: dict = {
    "timm_model_ids": [DINOV2_TIMM_ID, SIGLIP_TIMM_ID],
    "image_sizes": [IMAGE_SIZE, IMAGE_SIZE],
    "pad_token_id": 32000,
    "text_config": {"model_type": "llama", "pad_token_id": 32000, "vocab_size": 32064},
}
# openvla-7b at every width (vocabulary, heads, MLP, patches) but 2 Llama layers and 2 blocks
# per tower: the whole 7B path (bf16 base, LoRA on every linear, the real head) on a CPU.
OPENVLA_7B_SLIM_SPEC: dict = {
    **OPENVLA_7B_SPEC,
    "timm_model_ids": [SLIM_DINOV2_ID, SLIM_SIGLIP_ID],
    "text_config": {**OPENVLA_7B_SPEC["text_config"], "num_hidden_layers": SLIM_LLM_LAYERS},
}


# Llama's default init (0.02) gives a 64-wide random model attention logits near zero: every
# token then averages the whole sequence and the action slots (zero inputs) come out nearly
# the same for every image. A wider init gives sharp, content-dependent attention, as a
# pretrained model has, so what the images show reaches the slots from the first step.
TINY_INIT_STD = 0.3
TINY_LAYERS = 4  # slots are all alike after layer 0; the later layers tell them apart


def tiny_spec(pad_token_id: int) -> dict:
    """The tiny base's config.json content; vocab = pad id rounded up like OpenVLA (+64)."""
    vocab = (pad_token_id // 64 + 1) * 64
    text_config = {
        "model_type": "llama",
        "vocab_size": vocab,
        "pad_token_id": pad_token_id,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": TINY_LAYERS,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "max_position_embeddings": 2048,
        "initializer_range": TINY_INIT_STD,
    }
    return {
        "timm_model_ids": [TINY_DINOV2_ID, TINY_SIGLIP_ID],
        "image_sizes": [IMAGE_SIZE, IMAGE_SIZE],
        "pad_token_id": pad_token_id,
        "text_config": text_config,
    }


class ModelLoadError(UserError):
    """A base or checkpoint that cannot be loaded; the message names the file and the fix."""


@dataclass
class ModelConfig:
    """What to build: the base weights and the OFT action-chunk shape."""

    base: str = BASE_TINY
    """"tiny" | "openvla-7b-random" | "openvla-7b-slim" | a local dir in the openvla-7b layout
    | a hub id."""
    action_dim: int = 14
    """D: action dimensions per step."""
    chunk: int = 8
    """Steps predicted at once (parallel decoding)."""
    num_images: int = 2
    """Camera images per sample, primary first."""
    lora_rank: int = 32
    """LoRA r; alpha is min(r, 16) as in OFT."""
    grad_checkpointing: bool = False
    """Recompute LLM layers and ViT blocks in backward (batch 16 on 80 GB needs it)."""
    dtype: str = "float32"
    """Weights dtype of the frozen base: "float32" | "bfloat16". LoRA and head stay float32."""
    proprio_dim: int = 0
    """Robot state values fed as one token after the image patches (OFT's proprio); 0: none."""
    film: bool = False
    """FiLM: the instruction modulates every vision block (OFT+)."""

    def __post_init__(self) -> None:
        if not isinstance(self.base, str) or not self.base:
            raise ValueError("base must be 'tiny', 'openvla-7b-random', a directory or a hub id")
        for name in ("action_dim", "chunk", "num_images", "lora_rank"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not isinstance(self.proprio_dim, int) or self.proprio_dim < 0:
            raise ValueError(f"proprio_dim must be an int >= 0, got {self.proprio_dim!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def num_slots(self) -> int:
        """Action slots in the sequence: CHUNK x D."""
        return self.chunk * self.action_dim
