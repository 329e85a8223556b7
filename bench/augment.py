"""OFT's image augmentation on CPU: today's batched ops beside their first, plainer form.

Every training step augments each camera image (crop, brightness, contrast, saturation, hue);
on a CPU that is a part of each step of the learning checks. The first form built the crop's
grid with F.affine_grid (a batched matrix product), converted to HSV with torch.where and
max(dim=1), made a new tensor at every step and wrapped the hue with torch.remainder; today's
builds the grid directly, uses elementwise maximum/minimum and float masks, works in place
after the crop and wraps with floor. Both run on the same batch in alternating rounds; the
script prints the median images/s of each and their ratio, and the largest difference
between their outputs.
"""

from __future__ import annotations

import statistics
import time

import click
import torch
import torch.nn.functional as F

from trainer.data import augment as today


def first_crop_resize(images: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    m = images.shape[0]
    side = today._SIDE
    theta = torch.zeros(m, 2, 3, dtype=images.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = side
    theta[:, :, 2] = centers.to(images.dtype) * (1 - side)
    grid = F.affine_grid(theta, list(images.shape), align_corners=True)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=True)


def first_rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(1)
    v, _ = x.max(dim=1)
    delta = v - x.min(dim=1).values
    s = torch.where(v > 0, delta / torch.where(v > 0, v, 1), 0)
    safe = torch.where(delta > 0, delta, 1)
    rc, gc, bc = (v - r) / safe, (v - g) / safe, (v - b) / safe
    h = torch.where(v == r, bc - gc, torch.where(v == g, 2 + rc - bc, 4 + gc - rc))
    h = torch.where(delta > 0, torch.remainder(h / 6, 1.0), 0)
    return torch.stack([h, s, v], dim=1)


def first_jitter_hsv(x: torch.Tensor, saturation: torch.Tensor, hue: torch.Tensor) -> torch.Tensor:
    h, s, v = first_rgb_to_hsv(x).unbind(1)
    s = (s * saturation.view(-1, 1, 1)).clamp(0, 1)
    h = torch.remainder(h + hue.view(-1, 1, 1), 1.0)
    hsv = torch.stack([h, s, v], dim=1)
    h, s, v = hsv[:, 0:1], hsv[:, 1:2], hsv[:, 2:3]
    n = torch.tensor([5.0, 3.0, 1.0], dtype=x.dtype).view(1, 3, 1, 1)
    k = torch.remainder(n + h * 6, 6)
    return (v - v * s * torch.clamp(torch.minimum(k, 4 - k), 0, 1)).clamp(0, 1)


def first_augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """today.augment's operations, parameters and order, in the first form."""
    u = torch.rand(images.shape[0], 6, generator=generator).to(images.dtype)
    x = first_crop_resize(images, u[:, :2] * 2 - 1)
    x = (x + today._per_image(u[:, 2] * 2 - 1) * today.BRIGHTNESS).clamp(0, 1)
    low, high = today.CONTRAST
    contrast = today._per_image(low + u[:, 3] * (high - low))
    mean = x.mean(dim=(2, 3), keepdim=True)
    x = ((x - mean) * contrast + mean).clamp(0, 1)
    low, high = today.SATURATION
    return first_jitter_hsv(x, low + u[:, 4] * (high - low), (u[:, 5] * 2 - 1) * today.HUE)


def images_per_s(fn, images: torch.Tensor, repeats: int) -> float:
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for _ in range(repeats):
        fn(images, generator)
    return repeats * images.shape[0] / (time.perf_counter() - start)


@click.command()
@click.option("--rounds", default=7, show_default=True, help="Alternating rounds.")
@click.option("--repeats", default=5, show_default=True, help="Batches per variant per round.")
@click.option("--images", default=16, show_default=True, help="Images per batch (8 x 2 cameras).")
def main(rounds: int, repeats: int, images: int) -> None:
    batch = torch.rand(images, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    a = today.augment(batch, torch.Generator().manual_seed(2))
    b = first_augment(batch, torch.Generator().manual_seed(2))
    print(f"largest output difference: {(a - b).abs().max().item():.2e}")
    first, now = [], []
    for _ in range(rounds):
        first.append(images_per_s(first_augment, batch, repeats))
        now.append(images_per_s(today.augment, batch, repeats))
    print(f"{torch.get_num_threads()} thread(s), {rounds} rounds of {repeats} batches of {images}")
    print(f"first form: {statistics.median(first):.0f} images/s (median)")
    print(f"today:      {statistics.median(now):.0f} images/s (median)")
    ratios = [n / f for n, f in zip(now, first, strict=True)]
    print(f"today / first: {statistics.median(ratios):.2f}x images/s (median of round ratios)")


if __name__ == "__main__":
    main()
