"""A deployed policy sees a camera frame exactly as training saw the same frame in a shard."""

from __future__ import annotations

import numpy as np
import torch
from episode_fixtures import make_episodes, read_split, run_convert

from pipeline.inputs.layout import EpisodeRef
from pipeline.inputs.registry import input_layout
from shards.format import JpegStorage, episode_key
from trainer.data.augment import pixel_values
from trainer.inference.policy import Policy
from trainer.run.loop import train
from trainer.run.train_config import TrainConfig

QUALITY = 80  # not the default, so the checkpoint must carry the set's own


def test_policy_frames_and_shard_frames_reach_the_model_identically(tmp_path):
    episodes = make_episodes(tmp_path / "episodes", episodes=2, steps=4, image_size=(120, 160))
    shards = tmp_path / "shards"
    run_convert(tmp_path / "episodes", shards, image_size=224, jpeg_quality=QUALITY, chunk=2)
    samples = read_split(shards, "train")
    cameras = tuple(samples[0]["images"])[:2]
    cfg = TrainConfig(
        shards=str(shards), run_dir=tmp_path / "run", base="tiny", lora_rank=4, device="cpu",
        workers=0, batch_size=2, max_steps=1, save_every=1, cameras=cameras,
    )  # fmt: skip
    train(cfg)
    policy = Policy.load(cfg.run_dir / "step-1", device="cpu")
    assert policy.jpeg == JpegStorage(QUALITY, "420")
    paths = {episode_key(p.relative_to(tmp_path / "episodes").as_posix()): p for p in episodes}
    for sample in samples[:3]:
        meta = sample["meta"]
        path = paths[meta["episode"]]
        with input_layout("processed").open_episode(EpisodeRef(path, path.name)) as episode:
            frames = {c: episode.frames(c, meta["t"], meta["t"] + 1)[0] for c in cameras}
        assert frames[cameras[0]].shape == (120, 160, 3)  # a raw camera frame, not a stored one
        views = policy.stored_views([frames])
        stored = np.stack([sample["images"][c] for c in cameras])
        np.testing.assert_array_equal(views[0], stored)
        from_shard = pixel_values(torch.from_numpy(stored)[None], image_aug=True)
        assert torch.equal(policy.model_input(views), from_shard)
