"""OpenVLA-7B built natively (timm ViTs, projector, HF Llama) with OFT's LoRA and L1 action head."""

from .images import normalize_images
from .model_config import ModelConfig, ModelLoadError
from .model_files import load_policy, save_policy
from .vla_policy import VLAPolicy, build_policy

__all__ = [
    "ModelConfig",
    "ModelLoadError",
    "VLAPolicy",
    "build_policy",
    "load_policy",
    "normalize_images",
    "save_policy",
]
