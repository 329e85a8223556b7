"""Per-image DINOv2 + SigLIP normalization into OpenVLA's 6-channel pixel_values (pure torch)."""

from __future__ import annotations

import torch

DINOV2_MEAN = (0.485, 0.456, 0.406)  # ImageNet
DINOV2_STD = (0.229, 0.224, 0.225)
SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)


def normalize_images(images: torch.Tensor) -> torch.Tensor:
    """(B, N, 3, H, W) uint8 or float in [0, 1] -> (B, 6N, H, W) float32; per image DINOv2 first."""
    if images.ndim != 5 or images.shape[2] != 3:
        raise ValueError(f"images must be (B, N, 3, H, W), got {tuple(images.shape)}")
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    batch, num_images, _, height, width = x.shape
    # Each norm written straight into its half of the output: no concatenation, no copies.
    out = torch.empty((batch, num_images, 6, height, width), dtype=x.dtype, device=x.device)
    for half, (mean, std) in enumerate(((DINOV2_MEAN, DINOV2_STD), (SIGLIP_MEAN, SIGLIP_STD))):
        m = torch.tensor(mean, device=x.device).view(1, 1, 3, 1, 1)
        s = torch.tensor(std, device=x.device).view(1, 1, 3, 1, 1)
        torch.sub(x, m, out=out[:, :, 3 * half : 3 * half + 3]).div_(s)
    return out.view(batch, num_images * 6, height, width)
