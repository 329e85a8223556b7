"""Device-side batch preparation: augmentation ops, action normalization, valid rows."""

from __future__ import annotations

import colorsys
import math

import numpy as np
import torch

from shards.reader import StreamConfig, make_loader
from shards.source import open_shard_set
from trainer.data.augment import (
    CROP_AREA,
    augment,
    center_crop,
    crop_resize,
    hsv_to_rgb,
    jitter_hsv,
    rgb_to_hsv,
    wrap_unit,
)
from trainer.data.batches import BatchPrep, Prefetcher
from trainer.model import ModelConfig, build_model


def test_augment_is_seeded_per_image_and_stays_in_range():
    images = torch.rand(1, 3, 64, 64).repeat(6, 1, 1, 1)
    a = augment(images, torch.Generator().manual_seed(1))
    b = augment(images, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == images.shape
    assert a.min() >= 0 and a.max() <= 1
    assert len({round(float(x.mean()), 5) for x in a}) == 6  # own parameters per image
    flat = torch.full((2, 3, 32, 32), 0.3)
    assert torch.allclose(center_crop(flat), flat)


def _tf_crop_and_resize(image, box):
    """OFT's crop (dlimp -> tf.image.crop_and_resize, bilinear) for one (C, H, W) image and a
    normalized box (y1, x1, y2, x2), written from TensorFlow's documented sampling rule."""
    _, h, w = image.shape
    y1, x1, y2, x2 = box
    ys = y1 * (h - 1) + np.arange(h) * (y2 - y1) * (h - 1) / (h - 1)
    xs = x1 * (w - 1) + np.arange(w) * (x2 - x1) * (w - 1) / (w - 1)
    top, left = np.floor(ys).astype(int), np.floor(xs).astype(int)
    bottom, right = np.minimum(top + 1, h - 1), np.minimum(left + 1, w - 1)
    dy, dx = (ys - top)[:, None], (xs - left)[None, :]
    upper = image[:, top][:, :, left] * (1 - dx) + image[:, top][:, :, right] * dx
    lower = image[:, bottom][:, :, left] * (1 - dx) + image[:, bottom][:, :, right] * dx
    return upper * (1 - dy) + lower * dy


def test_crop_samples_as_ofts_crop_and_resize():
    images = torch.rand(3, 3, 20, 24, generator=torch.Generator().manual_seed(0))
    side = math.sqrt(CROP_AREA)
    # (x, y) centres in [-1, 1] -> OFT's box offsets in [0, 1 - side]; the last is its
    # evaluation centre crop.
    centers = torch.tensor([[-1.0, 1.0], [0.3, -0.6], [0.0, 0.0]])
    out = crop_resize(images, centers)
    for image, (cx, cy), got in zip(images.double().numpy(), centers.tolist(), out, strict=True):
        y1, x1 = (cy + 1) / 2 * (1 - side), (cx + 1) / 2 * (1 - side)
        want = _tf_crop_and_resize(image, (y1, x1, y1 + side, x1 + side))
        np.testing.assert_allclose(got.numpy(), want, atol=2e-5)
    torch.testing.assert_close(center_crop(images[2:]), out[2:])


def _tf_saturation_then_hue(image, factor, delta):
    """tf.image.adjust_saturation then adjust_hue (with dlimp's clip between), per pixel."""
    out = np.empty_like(image)
    for i, j in np.ndindex(image.shape[1:]):
        h, s, v = colorsys.rgb_to_hsv(*image[:, i, j])
        rgb = np.clip(colorsys.hsv_to_rgb(h, min(max(s * factor, 0.0), 1.0), v), 0, 1)
        h, s, v = colorsys.rgb_to_hsv(*rgb)
        out[:, i, j] = np.clip(colorsys.hsv_to_rgb((h + delta) % 1.0, s, v), 0, 1)
    return out


def test_colour_jitter_is_ofts_hsv_saturation_and_hue():
    images = torch.rand(4, 3, 6, 7, generator=torch.Generator().manual_seed(1))
    images[0, :, 0, 0] = 0.5  # grey: no hue, no saturation
    images[1, :, 0, 0] = torch.tensor([1.0, 0.0, 0.0])  # pure red, hue 0: a shift wraps
    factors = torch.tensor([0.8, 1.2, 1.0, 1.13])
    deltas = torch.tensor([-0.05, 0.05, 0.0, -0.021])
    out = jitter_hsv(images, factors, deltas)
    for image, f, d, got in zip(images.double().numpy(), factors, deltas, out, strict=True):
        want = _tf_saturation_then_hue(image, float(f), float(d))
        np.testing.assert_allclose(got.numpy(), want, atol=1e-5)
    # Factor 1 and delta 0 change nothing.
    torch.testing.assert_close(jitter_hsv(images, torch.ones(4), torch.zeros(4)), images)


def test_hue_wraps_as_remainder_does_bit_for_bit():
    # The colour jitter wraps hue (and the HSV->RGB sector) without torch.remainder: the
    # same floats, edges included, so runs repeat what they gave before.
    edges = [-1.0, -0.05, -1e-8, -0.0, 0.0, 1e-8, 0.5, 1 - 2**-24, 1.0, 1.05, 2 - 2**-23]
    h = torch.cat(
        [
            torch.tensor(edges),
            torch.rand(10_000, generator=torch.Generator().manual_seed(3)) * 3 - 1,
        ]
    )
    assert torch.equal(wrap_unit(h.clone()), torch.remainder(h, 1.0))
    x = torch.rand(5, 3, 40, 40, generator=torch.Generator().manual_seed(4))
    x[0, :, :4] = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)  # red: hue 0, sector wraps
    hsv = rgb_to_hsv(x)
    hsv[1, 0] = 1 - 2**-24  # the top of the hue circle: k runs to its largest
    h, s, v = hsv[:, 0:1], hsv[:, 1:2], hsv[:, 2:3]
    k = torch.remainder(torch.tensor([5.0, 3.0, 1.0]).view(1, 3, 1, 1) + h * 6, 6)
    assert torch.equal(hsv_to_rgb(hsv), v - v * s * torch.clamp(torch.minimum(k, 4 - k), 0, 1))


def test_prefetched_batches_are_normalized_and_mask_rows_past_the_end(toy_shards):
    shard_set = open_shard_set(toy_shards)
    policy = build_model(ModelConfig(base="tiny", action_dim=3, chunk=4, lora_rank=4))
    prep = BatchPrep(
        [shard_set.stats.action], "bounds", torch.device("cpu"), True, torch.Generator()
    )
    loader = make_loader(shard_set, StreamConfig(batch_size=16, finite=True))
    batches = list(Prefetcher(loader, policy.tokenize, prep, torch.device("cpu"), train=False))
    assert sum(b.size for b in batches) == 64
    batch = batches[0]
    assert batch.pixel_values.shape == (16, 12, 224, 224)
    assert batch.actions.min() >= -1 and batch.actions.max() <= 1
    steps = torch.tensor([int(k[-6:]) for k in batch.keys])
    assert torch.equal(batch.valid_rows.sum(1), (16 - steps).clamp(max=4))
    assert batch.input_ids.shape[0] == 16


def test_drop_tail_skips_each_episodes_padded_chunks(toy_shards):
    shard_set = open_shard_set(toy_shards)
    # 4 train episodes of 16 steps in chunks of 4: 3 padded samples at each end.
    for drop, samples in ((False, 64), (True, 52)):
        loader = make_loader(shard_set, StreamConfig(batch_size=8, finite=True, drop_tail=drop))
        valid = torch.cat([torch.as_tensor(b["valid"]) for b in loader])
        assert len(valid) == samples
        assert bool((valid == 4).all()) == drop
    # Training reads an endless stream the same way.
    stream = StreamConfig(batch_size=8, drop_tail=True, seed=1)
    for _, batch in zip(range(10), make_loader(shard_set, stream), strict=False):
        assert all(int(k[-6:]) <= 12 for k in batch["keys"])
        assert (torch.as_tensor(batch["valid"]) == 4).all()
