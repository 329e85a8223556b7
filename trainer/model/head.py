"""OFT's L1 regression action head: an MLP-ResNet from D*H hidden features to D actions per step."""

from __future__ import annotations

import torch
from torch import nn


class ResidualBlock(nn.Module):
    """x + ReLU(Linear(LayerNorm(x)))."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.relu(self.fc(self.norm(x)))


class L1RegressionHead(nn.Module):
    """(B, chunk, D*H) -> (B, chunk, D); fully trained, 268,644,366 parameters for D=14, H=4096."""

    def __init__(self, action_dim: int, hidden: int, num_blocks: int = 2) -> None:
        super().__init__()
        self.in_norm = nn.LayerNorm(action_dim * hidden)
        self.in_proj = nn.Linear(action_dim * hidden, hidden)
        self.blocks = nn.ModuleList(ResidualBlock(hidden) for _ in range(num_blocks))
        self.out_norm = nn.LayerNorm(hidden)
        self.out_proj = nn.Linear(hidden, action_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.in_proj(self.in_norm(features)))
        for block in self.blocks:
            x = block(x)
        return self.out_proj(self.out_norm(x))
