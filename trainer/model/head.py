"""OFT's L1 regression action head: an MLP-ResNet from D*H hidden features to D actions per step.

Module and parameter names are OpenVLA-OFT's own (`model.layer_norm1`, `model.fc1`,
`model.mlp_resnet_blocks.N.ffn.{0,1}`, `model.layer_norm2`, `model.fc2`) rather than names of
our choosing: the head is the one part both projects train from scratch, so a state dict that
is key-for-key OFT's is one format fewer. Our action_head.safetensors and OFT's
action_head--N_checkpoint.pt then differ only in the container and OFT's DDP `module.` prefix,
and moving a head either way needs no renaming table to keep in step with theirs.
"""

from __future__ import annotations

import re

import torch
from torch import nn


class MLPResNetBlock(nn.Module):
    """x + ReLU(Linear(LayerNorm(x))), as one Sequential named `ffn`."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.ffn = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.ffn(x)


class MLPResNet(nn.Module):
    """LayerNorm -> Linear -> ReLU -> residual blocks -> LayerNorm -> Linear."""

    def __init__(self, num_blocks: int, input_dim: int, hidden: int, output_dim: int) -> None:
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(input_dim)
        self.fc1 = nn.Linear(input_dim, hidden)
        self.mlp_resnet_blocks = nn.ModuleList(MLPResNetBlock(hidden) for _ in range(num_blocks))
        self.layer_norm2 = nn.LayerNorm(hidden)
        self.fc2 = nn.Linear(hidden, output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.fc1(self.layer_norm1(x)))
        for block in self.mlp_resnet_blocks:
            x = block(x)
        return self.fc2(self.layer_norm2(x))


class L1RegressionHead(nn.Module):
    """(B, chunk, D*H) -> (B, chunk, D); fully trained, 268,644,366 parameters for D=14, H=4096."""

    def __init__(self, action_dim: int, hidden: int, num_blocks: int = 2) -> None:
        super().__init__()
        self.model = MLPResNet(num_blocks, action_dim * hidden, hidden, action_dim)

    @property
    def dtype(self) -> torch.dtype:
        return self.model.fc1.weight.dtype

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.model(features)


# Our own names before the head took OFT's: checkpoints saved with them still load.
_EARLIER_NAMES = (
    (r"^in_norm\.", "model.layer_norm1."),
    (r"^in_proj\.", "model.fc1."),
    (r"^blocks\.(\d+)\.norm\.", r"model.mlp_resnet_blocks.\1.ffn.0."),
    (r"^blocks\.(\d+)\.fc\.", r"model.mlp_resnet_blocks.\1.ffn.1."),
    (r"^out_norm\.", "model.layer_norm2."),
    (r"^out_proj\.", "model.fc2."),
)


def with_current_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A head state dict saved under the earlier names, renamed (the same layers and maths);
    one already in OFT's names is returned as it is."""
    if not any(key.startswith("in_proj.") for key in state):
        return state
    renamed = {}
    for key, tensor in state.items():
        for pattern, replacement in _EARLIER_NAMES:
            key = re.sub(pattern, replacement, key)
        renamed[key] = tensor
    return renamed
