"""The robot's state as one more input token (OFT's proprio projector)."""

from __future__ import annotations

import torch
from torch import nn


class ProprioProjector(nn.Module):
    """Normalized state (B, D) -> one LLM-width token (B, H): Linear, GELU, Linear.

    Names follow OFT's ProprioProjector (fc1, act_fn1, fc2), so its checkpoint loads as is.
    """

    def __init__(self, proprio_dim: int, llm_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(proprio_dim, llm_dim)
        self.act_fn1 = nn.GELU()
        self.fc2 = nn.Linear(llm_dim, llm_dim)

    def forward(self, proprio: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act_fn1(self.fc1(proprio)))
