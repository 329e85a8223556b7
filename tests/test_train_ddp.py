"""Two gloo processes on CPU: disjoint data per rank and identical weights at the end."""

from __future__ import annotations

import os
import socket

import torch
import torch.multiprocessing as mp

from trainer.run.train_config import TrainConfig


def test_two_ranks_read_disjoint_samples_and_end_identical(toy_shards, tmp_path):
    cfg = TrainConfig(
        shards=str(toy_shards), run_dir=tmp_path / "run", base="tiny", lora_rank=4,
        batch_size=4, max_steps=3, device="cpu", workers=0, save_every=1000,
    )  # fmt: skip
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_rank_main, args=(2, port, cfg.to_json(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    keys = [set(r["keys"]) for r in ranks]
    assert len(keys[0]) == len(keys[1]) == 12 and not keys[0] & keys[1]
    assert ranks[0]["weights"].keys() == ranks[1]["weights"].keys()
    for name, value in ranks[0]["weights"].items():
        assert torch.equal(value, ranks[1]["weights"][name]), name
    assert (tmp_path / "run" / "step-3").is_dir()


def _rank_main(rank: int, world: int, port: int, cfg_json: str, out: str) -> None:
    """One torchrun-like process, instrumented to record its keys and final weights."""
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
    )  # fmt: skip
    torch.set_num_threads(1)  # two processes on a two-core machine
    from trainer.run import builder, loop

    keys, policies = [], []

    class Recording(builder.Prefetcher):
        def __next__(self):
            batch = super().__next__()
            keys.extend(batch.keys)
            return batch

    build = builder.build_model

    def recording_build(*args, **kwargs):
        policies.append(build(*args, **kwargs))
        return policies[-1]

    builder.Prefetcher = Recording
    builder.build_model = recording_build
    loop.train(TrainConfig.from_json(cfg_json, "test"))
    trained = {n: p.detach() for n, p in policies[0].named_parameters() if p.requires_grad}
    torch.save({"keys": keys, "weights": trained}, f"{out}/rank{rank}.pt")
