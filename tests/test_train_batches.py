"""Device-side batch preparation: augmentation ops, action normalization, valid rows."""

from __future__ import annotations

import torch

from shards.reader import StreamConfig, make_loader
from shards.source import open_shard_set
from trainer.augment import augment, center_crop
from trainer.batches import BatchPrep, Prefetcher
from trainer.model import ModelConfig, build_policy


def test_augment_is_seeded_per_image_and_stays_in_range():
    images = torch.rand(1, 3, 64, 64).repeat(6, 1, 1, 1)
    a = augment(images, torch.Generator().manual_seed(1))
    b = augment(images, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == images.shape
    assert a.min() >= 0 and a.max() <= 1
    assert len({round(float(x.mean()), 5) for x in a}) == 6  # own parameters per image
    flat = torch.full((2, 3, 32, 32), 0.3)
    assert torch.allclose(center_crop(flat), flat)


def test_prefetched_batches_are_normalized_and_mask_rows_past_the_end(toy_shards):
    shard_set = open_shard_set(toy_shards)
    policy = build_policy(ModelConfig(base="tiny", action_dim=3, chunk=4, lora_rank=4))
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
