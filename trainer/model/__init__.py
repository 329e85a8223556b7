"""OpenVLA-7B built natively (timm ViTs, projector, HF Llama) with OFT's LoRA and L1 action head."""

from .action_model import ActionModel, build_model
from .images import normalize_images
from .model_config import ModelConfig, ModelLoadError
from .model_files import load_model, save_model

__all__ = [
    "ModelConfig",
    "ModelLoadError",
    "ActionModel",
    "build_model",
    "load_model",
    "normalize_images",
    "save_model",
]
