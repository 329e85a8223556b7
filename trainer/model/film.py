"""FiLM (OFT+): the instruction scales and shifts every vision block's features.

OpenVLA-OFT+ wraps each ViT block of both towers: after the block's attention, the patch
features x become x * (1 + gamma) + beta, where gamma and beta are linear maps (`scale`,
`shift`) of the instruction's average token embedding, one value per feature channel for
all patches alike. Without it, OFT reports ALOHA policies that ignore the language.
Module names follow OFT's wrapper (`blocks.N.block.*`, `blocks.N.scale`, `blocks.N.shift`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


class FiLMBlock(nn.Module):
    """One timm ViT block with FiLM between its attention and its MLP."""

    def __init__(self, block: nn.Module, vision_dim: int, llm_dim: int) -> None:
        super().__init__()
        self.block = block
        self.scale = nn.Linear(llm_dim, vision_dim)
        self.shift = nn.Linear(llm_dim, vision_dim)

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """x (M, tokens, vision_dim), condition (M, llm_dim)."""
        b = self.block
        x = x + b.drop_path1(b.ls1(b.attn(b.norm1(x))))
        condition = condition.to(self.scale.weight.dtype)  # the maps train in float32
        gamma = self.scale(condition).to(x.dtype).unsqueeze(1)
        beta = self.shift(condition).to(x.dtype).unsqueeze(1)
        x = x * (1 + gamma) + beta
        return x + b.drop_path2(b.ls2(b.mlp(b.norm2(x))))


def add_film(tower: nn.Module, llm_dim: int) -> None:
    """Wrap every block of a timm ViT in FiLMBlock, in place (the blocks keep their weights);
    the new maps are float32, like the other weights that train, whatever the tower's dtype."""
    device = tower.patch_embed.proj.weight.device
    wrapped = []
    for block in tower.blocks:
        with torch.device(device):
            wrapped.append(FiLMBlock(block, tower.embed_dim, llm_dim))
    tower.blocks = nn.Sequential(*wrapped)


def has_film(tower: nn.Module) -> bool:
    return isinstance(tower.blocks[0], FiLMBlock)


def film_features(tower: nn.Module, pixels: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
    """What tower_features returns (second-to-last block, no prefix tokens), through FiLM."""
    x = tower.norm_pre(tower.patch_drop(tower._pos_embed(tower.patch_embed(pixels))))
    for block in list(tower.blocks)[:-1]:
        if tower.grad_checkpointing and torch.is_grad_enabled():
            x = checkpoint(block, x, condition, use_reentrant=False)
        else:
            x = block(x, condition)
    return x[:, tower.num_prefix_tokens :]


def film_parameters(module: nn.Module) -> dict[str, nn.Parameter]:
    """The FiLM maps' parameters by name (relative to `module`): they train in full."""
    found = {}
    for name, sub in module.named_modules():
        if isinstance(sub, FiLMBlock):
            for part in ("scale", "shift"):
                for key, param in getattr(sub, part).named_parameters():
                    found[f"{name}.{part}.{key}"] = param
    return found
