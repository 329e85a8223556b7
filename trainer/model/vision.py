"""The fused DINOv2 + SigLIP vision backbone: second-to-last-block patch features, concatenated."""

from __future__ import annotations

import math

import timm
import torch
from torch import nn

from .film import film_features, has_film
from .model_config import IMAGE_SIZE, TOWER_OVERRIDES

# Ends of each tower that OpenVLA never runs (features come from the second-to-last block);
# they stay loaded so the published checkpoint matches key for key, but stay frozen.
_UNUSED_TAILS = ("norm", "fc_norm", "attn_pool", "head")


def create_tower(timm_id: str) -> nn.Module:
    """A timm ViT at 224 px without a classifier, random weights (the checkpoint fills them)."""
    name, overrides = TOWER_OVERRIDES.get(timm_id, (timm_id, {}))
    return timm.create_model(
        name, pretrained=False, num_classes=0, img_size=IMAGE_SIZE, **overrides
    )


def tower_features(tower: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """(M, 3, 224, 224) -> (M, P, width), P = 256 at 14 px patches: the second-to-last block's
    output, without prefix tokens."""
    # stop_early skips the last block; timm honours set_grad_checkpointing here (non-reentrant).
    (features,) = tower.forward_intermediates(
        pixels,
        indices=[len(tower.blocks) - 2],
        norm=False,
        stop_early=True,
        output_fmt="NLC",
        intermediates_only=True,
    )
    return features


class FusedVisionBackbone(nn.Module):
    """DINOv2 ("featurizer") and SigLIP ("fused_featurizer") side by side, names as published."""

    def __init__(self, timm_ids: list[str]) -> None:
        super().__init__()
        self.featurizer = create_tower(timm_ids[0])
        self.fused_featurizer = create_tower(timm_ids[1])

    @property
    def embed_dim(self) -> int:
        return self.featurizer.embed_dim + self.fused_featurizer.embed_dim

    def forward(
        self, pixel_values: torch.Tensor, condition: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(M, 6, 224, 224), DINOv2 channels first -> (M, 256, 1024 + 1152); with FiLM
        (film.add_film), `condition` (M, llm_dim) is each image's instruction embedding."""
        towers = [
            (self.featurizer, pixel_values[:, :3]),
            (self.fused_featurizer, pixel_values[:, 3:]),
        ]
        if has_film(self.featurizer):
            if condition is None:
                raise ValueError("FiLM towers need the instruction's embedding")
            features = [film_features(tower, pixels, condition) for tower, pixels in towers]
        else:
            features = [tower_features(tower, pixels) for tower, pixels in towers]
        return torch.cat(features, dim=2)

    def unused_module_names(self) -> list[str]:
        """Submodules (relative names) that never run: last block, final norm, attn_pool."""
        names = []
        for tower_name in ("featurizer", "fused_featurizer"):
            tower = getattr(self, tower_name)
            names.append(f"{tower_name}.blocks.{len(tower.blocks) - 1}")
            for tail in _UNUSED_TAILS:
                module = getattr(tower, tail, None)
                if module is not None and any(True for _ in module.parameters()):
                    names.append(f"{tower_name}.{tail}")
        return names

    def set_grad_checkpointing(self, enable: bool) -> None:
        self.featurizer.set_grad_checkpointing(enable)
        self.fused_featurizer.set_grad_checkpointing(enable)


def sincos_positions(grid: int, dim: int) -> torch.Tensor:
    """(grid * grid, dim) 2-D sine-cosine table, row-major like the patches: a quarter of the
    channels each for sin(x), cos(x), sin(y), cos(y) over geometric frequencies."""
    quarter = dim // 4
    freqs = torch.exp(-math.log(100.0) * torch.arange(quarter) / max(quarter, 1))
    ys, xs = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    angles = [c.reshape(-1, 1).float() * freqs for c in (xs, ys)]
    table = torch.cat([f(a) for a in angles for f in (torch.sin, torch.cos)], dim=1)
    return nn.functional.pad(table, (0, dim - table.shape[1]))


def set_spatial_positions(backbone: FusedVisionBackbone, scale: float) -> None:
    """Give both towers position embeddings that say where each patch is.

    timm draws them with std 0.02, about 30x weaker than a patch's content, so a random
    tower's patch features hardly depend on where the patch sits; a pretrained one's do.
    """
    for tower in (backbone.featurizer, backbone.fused_featurizer):
        table = sincos_positions(math.isqrt(tower.pos_embed.shape[1]), tower.pos_embed.shape[2])
        with torch.no_grad():
            tower.pos_embed.copy_(scale * table.to(tower.pos_embed))
