"""The reading side of bench/peers.py, one library per process (so its peak RSS is its own).

    python -m bench.peers_read {ours,litdata,mds} SOURCE RESULT_JSON [--cache DIR ...]

Each library's own streaming dataset through a torch DataLoader (each library's own
subclass of it), shuffled, batch 8, decoded to uint8 image tensors plus the action chunks and
instructions. Ours is the trainer's loader as `vla-train` builds it with no loader flags;
the peers get one worker process per core, as their documentation advises. It times the
first batch from the dataset's creation (worker start-up and, for a remote set, the first
shard's download included), then `--samples` samples after 5 batches of warm-up, starting a
new epoch whenever one ends (each library's epoch start counted), and writes both to
RESULT_JSON.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch

from bench.peers_write import CAMERAS
from shards.loader_plan import AUTO, plan_loader
from trainer.run.loadtest import LoadtestConfig, trainer_stream

WARMUP_BATCHES = 5


def ours(source: str, batch_size: int, workers: int, cache: str) -> Iterable[dict[str, Any]]:
    del workers, cache  # auto decides; our sets stream without a local copy
    from shards.reader import make_loader

    plan = plan_loader(AUTO, AUTO)
    mixture, stream = trainer_stream(LoadtestConfig(source, batch_size=batch_size), plan)
    return make_loader(mixture, stream)


def litdata(source: str, batch_size: int, workers: int, cache: str) -> Iterable[dict[str, Any]]:
    """Its frames come back decoded already (torchvision's decode_jpeg, C x H x W)."""
    from litdata import StreamingDataLoader, StreamingDataset
    from litdata.streaming.resolver import Dir

    where = Dir(path=cache, url=source) if "://" in source else source
    dataset = StreamingDataset(where, shuffle=True)
    return StreamingDataLoader(dataset, batch_size=batch_size, num_workers=workers)


def _mds_dataset() -> type:
    from streaming import StreamingDataset

    class Frames(StreamingDataset):
        """MDS's documented way to transform samples: its jpeg column gives PIL images."""

        def __getitem__(self, index: int) -> dict[str, Any]:
            sample = super().__getitem__(index)
            for camera in CAMERAS.values():
                sample[camera] = torch.from_numpy(np.array(sample[camera].convert("RGB")))
            return sample

    return Frames


def mds(source: str, batch_size: int, workers: int, cache: str) -> Iterable[dict[str, Any]]:
    from streaming import StreamingDataLoader

    remote = "://" in source
    dataset = _mds_dataset()(local=cache if remote else source, remote=source if remote else None,
                             shuffle=True, batch_size=batch_size)  # fmt: skip
    return StreamingDataLoader(dataset, batch_size=batch_size, num_workers=workers)


LOADERS = {"ours": ours, "litdata": litdata, "mds": mds}


def images(batch: dict[str, Any]) -> list[torch.Tensor]:
    """A batch's frames: ours in one (B, cameras, H, W, 3) tensor, the peers' per camera."""
    return [batch["images"]] if "images" in batch else [batch[c] for c in CAMERAS.values()]


def endless(loader: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Batches on and on: the peers' epochs end (a new one starts), ours streams on."""
    while True:
        yield from loader


def measure(
    loader: Iterable[dict[str, Any]],
    samples: int,
    start: float,
    mark: Callable[[], object] | None = None,
) -> dict[str, float]:
    """Seconds to the first batch since `start`, and samples/s after the warm-up; `mark` is
    called the moment the timing begins and the moment it ends, while the loader still runs."""
    batches = endless(loader)
    first = next(batches)
    first_batch_s = time.perf_counter() - start
    if any(x.dtype != torch.uint8 for x in images(first)):
        raise SystemExit(f"frames not decoded to uint8: {[x.dtype for x in images(first)]}")
    for _ in range(WARMUP_BATCHES - 1):
        next(batches)
    if mark is not None:
        mark()
    seen, begin = 0, time.perf_counter()
    while seen < samples:
        seen += len(next(batches)["actions"])
    rate = seen / (time.perf_counter() - begin)
    if mark is not None:
        mark()
    return {"first_batch_s": first_batch_s, "samples_per_s": rate}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("library", choices=sorted(LOADERS))
    parser.add_argument("source")
    parser.add_argument("result")
    parser.add_argument("--cache", default="", help="local copy of a remote peer set")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--samples", type=int, default=1600)
    args = parser.parse_args()
    # litdata hands numpy arrays over its shared buffers to the default collate: it warns.
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
    start = time.perf_counter()
    loader = LOADERS[args.library](args.source, args.batch_size, args.workers, args.cache)
    result = measure(loader, args.samples, start)
    with open(args.result, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
