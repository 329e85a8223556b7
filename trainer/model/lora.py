"""LoRA the OFT way (peft, alpha = min(r, 16), gaussian init) on every adapted layer that runs."""

from __future__ import annotations

from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn

from .film import film_parameters
from .vla import OpenVLA

# peft's "all-linear" turns the Linear layers into a list of name suffixes ("proj", "qkv", ...)
# and then matches every module ending so, which also catches each ViT's patch embedding
# `patch_embed.proj`, a Conv2d. OFT trains those two convolutions; so do we.
_ADAPTED = (nn.Linear, nn.Conv2d)


def lora_targets(model: OpenVLA) -> list[str]:
    """Full names of the adapted layers in the forward path: every nn.Linear (vision towers,
    projector, LLM) and both towers' patch_embed.proj Conv2d.

    OFT's "all-linear" with peft 0.11 also adapted lm_head, the last ViT blocks and SigLIP's
    attn_pool (2.86M of its ~110.8M on 7B); none of them ever gets a gradient, so we leave
    them out: 107,969,280 trainable LoRA parameters on 7B at r=32 (107,264 of them on the
    two patch embeddings), and DDP needs no find_unused_parameters.
    """
    unused = tuple(model.unused_module_names())
    film_maps = {name.rpartition(".")[0] for name in film_parameters(model)}  # train in full
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, _ADAPTED)
        and name not in film_maps
        and not any(name == u or name.startswith(u + ".") for u in unused)
    ]


def add_lora(model: OpenVLA, rank: int) -> PeftModel:
    """Wrap with LoRA; peft freezes every base weight (the unused modules included)."""
    config = LoraConfig(
        r=rank,
        lora_alpha=min(rank, 16),
        lora_dropout=0.0,
        target_modules=lora_targets(model),
        init_lora_weights="gaussian",
    )
    return get_peft_model(model, config)


def count_parameters(module: nn.Module, trainable_only: bool) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
