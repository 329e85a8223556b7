"""OFT's image augmentation on CPU: today's batched ops beside their first, plainer form.

Every training step augments each camera image (crop, brightness, contrast, saturation, hue);
on a CPU that is a part of each step of the learning checks. The first form built the crop's
grid with F.affine_grid (a batched matrix product) and converted to HSV with torch.where and
max(dim=1); today's builds the grid directly and uses elementwise maximum/minimum and float
masks. Both run on the same batch in alternating rounds; the script prints the median
images/s of each and their ratio, and the largest difference between their outputs.
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


def first_augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """today.augment with the first crop and HSV conversion swapped in."""
    crop, hsv = today.crop_resize, today.rgb_to_hsv
    today.crop_resize, today.rgb_to_hsv = first_crop_resize, first_rgb_to_hsv
    try:
        return today.augment(images, generator)
    finally:
        today.crop_resize, today.rgb_to_hsv = crop, hsv


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
