"""OpenVLA's "fused-gelu-mlp" projector from fused patch features to the LLM width."""

from __future__ import annotations

import torch
from torch import nn


class FusedGeluProjector(nn.Module):
    """Linear(v, 4v) -> GELU -> Linear(4v, h) -> GELU -> Linear(h, h); names fc1/fc2/fc3."""

    def __init__(self, vision_dim: int, llm_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(vision_dim, 4 * vision_dim)
        self.fc2 = nn.Linear(4 * vision_dim, llm_dim)
        self.fc3 = nn.Linear(llm_dim, llm_dim)
        self.act = nn.GELU()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc3(self.act(self.fc2(self.act(self.fc1(features)))))
