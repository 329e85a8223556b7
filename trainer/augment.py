"""Camera images -> model input: OFT's augmentation as batched torch ops, or the eval view."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from trainer.model import normalize_images

CROP_AREA = 0.9  # random resized crop: 90% of the area at square aspect, resized back
BRIGHTNESS = 0.2  # additive delta in [-0.2, 0.2]
CONTRAST = (0.8, 1.2)
SATURATION = (0.8, 1.2)
HUE = 0.05  # shift in [-0.05, 0.05] of the colour wheel
_SIDE = math.sqrt(CROP_AREA)

# NTSC YIQ: hue is the angle in the (I, Q) plane, so a hue shift is one 3x3 matrix per image.
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)
_GRAY = (0.299, 0.587, 0.114)


def crop_resize(images: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """Square crops of CROP_AREA at `centers` (M, 2) in [-1, 1] (0 = centre), back to full size.

    One affine sampling grid per image, so the whole batch is a single grid_sample call.
    """
    m = images.shape[0]
    theta = torch.zeros(m, 2, 3, device=images.device, dtype=images.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = _SIDE
    theta[:, :, 2] = centers.to(images.dtype) * (1 - _SIDE)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def center_crop(images: torch.Tensor) -> torch.Tensor:
    """The evaluation view of a model trained with augmentation: the central CROP_AREA crop."""
    return crop_resize(images, torch.zeros(images.shape[0], 2, device=images.device))


def pixel_values(
    images: torch.Tensor, image_aug: bool, generator: torch.Generator | None = None
) -> torch.Tensor:
    """(B, N, H, W, 3) uint8 camera images -> (B, 6N, H, W) model input.

    With a generator: the training view (augmented when image_aug). Without: the evaluation
    view, the centre crop when the model was trained with image_aug. Training, validation and
    the deployed policy all go through here, so they see images the same way.
    """
    b, n, h, w, _ = images.shape
    x = images.permute(0, 1, 4, 2, 3).reshape(b * n, 3, h, w).float().div_(255)
    if image_aug:
        x = augment(x, generator) if generator is not None else center_crop(x)
    return normalize_images(x.view(b, n, 3, h, w))


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(M, 3, H, W) float in [0, 1] -> augmented, in OFT's order: crop, brightness, contrast,
    saturation, hue. Parameters come from `generator` (CPU), so runs repeat on any device.
    """
    m = images.shape[0]
    u = torch.rand(m, 6, generator=generator).to(images.device, images.dtype)
    x = crop_resize(images, u[:, :2] * 2 - 1)
    x = (x + _per_image(u[:, 2] * 2 - 1) * BRIGHTNESS).clamp(0, 1)
    contrast = _per_image(CONTRAST[0] + u[:, 3] * (CONTRAST[1] - CONTRAST[0]))
    mean = x.mean(dim=(2, 3), keepdim=True)
    x = ((x - mean) * contrast + mean).clamp(0, 1)
    saturation = _per_image(SATURATION[0] + u[:, 4] * (SATURATION[1] - SATURATION[0]))
    gray = _gray(x)
    x = (gray + (x - gray) * saturation).clamp(0, 1)
    return _shift_hue(x, (u[:, 5] * 2 - 1) * HUE).clamp(0, 1)


def _per_image(values: torch.Tensor) -> torch.Tensor:
    return values.view(-1, 1, 1, 1)


def _gray(x: torch.Tensor) -> torch.Tensor:
    weights = torch.tensor(_GRAY, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * weights).sum(dim=1, keepdim=True)


def _shift_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    angle = shift * 2 * math.pi
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotation = torch.zeros(x.shape[0], 3, 3, device=x.device, dtype=x.dtype)
    rotation[:, 0, 0] = 1
    rotation[:, 1, 1] = rotation[:, 2, 2] = cos
    rotation[:, 1, 2] = -sin
    rotation[:, 2, 1] = sin
    to_yiq = _RGB_TO_YIQ.to(x.device, x.dtype)
    to_rgb = _YIQ_TO_RGB.to(x.device, x.dtype)
    matrix = to_rgb @ rotation @ to_yiq  # (M, 3, 3)
    return torch.einsum("mij,mjhw->mihw", matrix, x)
