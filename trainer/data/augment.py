"""Camera images -> model input: OFT's augmentation as batched torch ops, or the eval view."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from trainer.model import normalize_images

CROP_AREA = 0.9  # random resized crop: 90% of the area at square aspect, resized back
BRIGHTNESS = 0.2  # additive delta in [-0.2, 0.2]
CONTRAST = (0.8, 1.2)
SATURATION = (0.8, 1.2)  # factor on HSV saturation
HUE = 0.05  # shift in [-0.05, 0.05] of the HSV hue circle
_SIDE = math.sqrt(CROP_AREA)


def crop_resize(images: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """Square crops of CROP_AREA at `centers` (M, 2) = (x, y) in [-1, 1] (0 = centre), back to
    full size, sampled as TensorFlow's crop_and_resize (OFT's crop) samples: bilinear, the
    crop's first and last output pixels on its box's edges (hence align_corners=True).

    One sampling grid per image, so the whole batch is a single grid_sample call. The grid
    is built directly, x and y each one scale and shift of the pixel centres: the same grid
    as F.affine_grid's for this scale-and-shift theta, without its batched matrix product,
    which on CPU cost more than the sampling itself.
    """
    m, _, h, w = images.shape
    kwargs = {"device": images.device, "dtype": images.dtype}
    shift = centers.to(images.dtype) * (1 - _SIDE)  # (M, 2): x, y
    xs = torch.linspace(-1, 1, w, **kwargs).mul_(_SIDE).view(1, 1, w) + shift[:, 0, None, None]
    ys = torch.linspace(-1, 1, h, **kwargs).mul_(_SIDE).view(1, h, 1) + shift[:, 1, None, None]
    grid = torch.stack([xs.expand(m, h, w), ys.expand(m, h, w)], dim=-1)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=True)


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
    """(M, 3, H, W) float in [0, 1] -> augmented, with OFT's operations in OFT's order (crop,
    brightness, contrast, saturation, hue; clipped to [0, 1] after each). Parameters come from
    `generator` (CPU), so runs repeat on any device.

    Each image draws its parameters independently and its crop's x and y offsets separately.
    OFT's dlimp hands one seed to every operation, so its stateless draws coincide: the crop
    sits on the diagonal (height offset = width offset) and the colour changes move together.
    We keep the wider, independent family on purpose (docs/OFT.md).
    """
    m = images.shape[0]
    u = torch.rand(m, 6, generator=generator).to(images.device, images.dtype)
    # The crop makes a new tensor, so the steps after it work in place: each is a pass over
    # the whole batch either way, but a new tensor per step also costs its allocation.
    x = crop_resize(images, u[:, :2] * 2 - 1)
    x.add_(_per_image(u[:, 2] * 2 - 1) * BRIGHTNESS).clamp_(0, 1)
    contrast = _per_image(CONTRAST[0] + u[:, 3] * (CONTRAST[1] - CONTRAST[0]))
    mean = x.mean(dim=(2, 3), keepdim=True)  # per channel, as tf.image.adjust_contrast
    x.sub_(mean).mul_(contrast).add_(mean).clamp_(0, 1)
    saturation = SATURATION[0] + u[:, 4] * (SATURATION[1] - SATURATION[0])
    return jitter_hsv(x, saturation, (u[:, 5] * 2 - 1) * HUE)


def _per_image(values: torch.Tensor) -> torch.Tensor:
    return values.view(-1, 1, 1, 1)


def jitter_hsv(x: torch.Tensor, saturation: torch.Tensor, hue: torch.Tensor) -> torch.Tensor:
    """tf.image.adjust_saturation then adjust_hue, per image: S x factor (clipped to [0, 1]),
    H + delta (mod 1). One HSV round trip serves both: the RGB OFT clips in between is
    already in [0, 1], so the clip changes nothing there."""
    h, s, v = hsv_planes(x)
    s.mul_(_per_image(saturation)[:, 0]).clamp_(0, 1)
    h.add_(_per_image(hue)[:, 0])
    wrap_unit(h)
    return rgb_from_planes(h, s, v).clamp_(0, 1)


def wrap_unit(h: torch.Tensor) -> torch.Tensor:
    """h mod 1, in place, for h in [-1, 2): the same values as torch.remainder(h, 1.0) there
    (x - floor(x) is exact where x >= 0 and rounds x + 1 as remainder does where x < 0), at
    a fraction of its cost on CPU."""
    return h.sub_(torch.floor(h))


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """(M, 3, H, W) RGB in [0, 1] -> HSV, each in [0, 1] (the hexcone model, as colorsys)."""
    return torch.stack(hsv_planes(x), dim=1)


def hsv_planes(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(M, 3, H, W) RGB in [0, 1] -> (h, s, v), each (M, H, W) in [0, 1] and a new tensor.

    Written with elementwise maximum/minimum and float masks: on CPU, `max(dim=1)` and
    `torch.where` over a batch of frames cost several times a plain elementwise op.
    Dividing by at least the smallest normal float changes nothing where v or delta is
    nonzero, and where they are zero so is the numerator (grey pixels get h = s = 0).
    """
    r, g, b = x.unbind(1)
    v = torch.maximum(torch.maximum(r, g), b)
    delta = v - torch.minimum(torch.minimum(r, g), b)
    tiny = torch.finfo(x.dtype).tiny
    s = delta / v.clamp_min(tiny)
    is_r = torch.eq(v, r, out=torch.empty_like(v))  # as floats, without a bool tensor
    is_g = torch.eq(v, g, out=torch.empty_like(v)).mul_(1 - is_r)
    is_b = 1 - is_r - is_g
    sector = is_r * (g - b) + is_g * (2 * delta + b - r) + is_b * (4 * delta + r - g)
    h = sector.div_(6 * delta.clamp_min(tiny))  # in [-1/6, 5/6]: only the red sector wraps
    return wrap_unit(h), s, v


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """Inverse of rgb_to_hsv."""
    return rgb_from_planes(x[:, 0], x[:, 1], x[:, 2])


def rgb_from_planes(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(h, s, v) planes (M, H, W) -> (M, 3, H, W) RGB, in the closed form: channel n in
    (R, G, B) = (5, 3, 1) is v - v s clamp(min(k, 4 - k), 0, 1) with k = (n + 6h) mod 6
    (elementwise, no lookups)."""
    n = torch.tensor([5.0, 3.0, 1.0], dtype=h.dtype, device=h.device).view(1, 3, 1, 1)
    k = n + h.unsqueeze(1) * 6  # in [1, 11) for h in [0, 1)
    # mod 6: exact here, and a fraction of torch.remainder's cost on CPU
    k.sub_(torch.ge(k, 6, out=torch.empty_like(k)).mul_(6))
    k = torch.minimum(k, 4 - k).clamp_(0, 1)
    return k.mul_((v * s).unsqueeze(1)).neg_().add_(v.unsqueeze(1))  # v - v s clamp(...)
