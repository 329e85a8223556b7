"""The writing side of bench/peers.py: one set of episodes written by each library's own writer.

    python -m bench.peers_write {ours,litdata,mds} EPISODES OUT RESULT_JSON [--workers N]

One library per process, so its peak RSS is its own (and litdata's switch of the
multiprocessing start method to spawn stays in its process); the seconds it took go to
RESULT_JSON.

Every writer starts from the same HDF5 episodes and stores the same samples: the head and
left_wrist frames at 224x224 (resized by the shard contract's resize), the 8x14 action chunk
at each step (the last row repeated past the end, as our shards pad) and the instruction.
- ours: `vla-data convert` with its defaults (JPEG quality 95, 4:2:0), in-process;
- litdata: `optimize` over the episode files, one worker process per core, each frame a
  `litdata.Jpeg` of the very bytes our converter stores (passed through, not re-encoded);
- MosaicML Streaming: `MDSWriter` with a `jpeg` column per camera, in one process as its
  documentation writes sets. Its jpeg column stores a PIL image opened from a JPEG file as
  that file's bytes, and re-encodes any other at PIL's default quality 75 (no option): so the
  frames are first saved as files (camera-dump style, our converter's bytes) and opened from
  there. That staging is counted in its write time, as encoding is counted in the others'.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from pipeline.config import ConvertConfig
from pipeline.convert.stages import convert
from shards.format import JpegStorage, encode_jpeg, resize_square

# Our generator's camera datasets -> the camera names the shards give them.
CAMERAS = {"head_camera_image": "head", "left_wrist_image": "left_wrist"}
SIDE = 224
CHUNK = 8
JPEG = JpegStorage(95, "420")  # vla-data convert's defaults


def action_chunks(actions: np.ndarray, chunk: int) -> np.ndarray:
    """(T, D) -> (T, chunk, D): rows t..t+chunk-1, the last row repeated past the end."""
    padded = np.concatenate([actions, np.repeat(actions[-1:], chunk - 1, axis=0)])
    return np.stack([padded[t : t + chunk] for t in range(len(actions))])


def episode_samples(path: str) -> Iterator[dict[str, Any]]:
    """One episode's samples: 224 px uint8 frames per camera, the action chunk, the instruction."""
    with h5py.File(path, "r") as f:
        instruction = f["seen"][0].decode()
        chunks = action_chunks(f["action"][()].astype(np.float32), CHUNK)
        frames = {camera: f[name][()] for name, camera in CAMERAS.items()}
    for t, chunk in enumerate(chunks):
        sample = {camera: resize_square(images[t], SIDE) for camera, images in frames.items()}
        yield {**sample, "actions": chunk, "instruction": instruction}


def litdata_samples(path: str) -> Iterator[dict[str, Any]]:
    """litdata's `fn`: each frame as our converter's JPEG bytes, kept as they are."""
    from litdata import Jpeg

    for sample in episode_samples(path):
        for camera in CAMERAS.values():
            sample[camera] = Jpeg(bytes=encode_jpeg(sample[camera], JPEG), max_quality=None)
        yield sample


def write_ours(episodes: Path, out: Path) -> float:
    start = time.perf_counter()
    convert(ConvertConfig(episodes, shards_dir=out, val_episodes=0,
                          cameras=tuple(CAMERAS.values()), progress=False))  # fmt: skip
    return time.perf_counter() - start


def write_litdata(episodes: Path, out: Path, workers: int) -> float:
    from litdata import optimize

    start = time.perf_counter()
    inputs = [str(p) for p in sorted(episodes.glob("*.hdf5"))]
    optimize(fn=litdata_samples, inputs=inputs, output_dir=str(out), chunk_bytes="64MB",
             num_workers=workers)  # fmt: skip
    return time.perf_counter() - start


def write_mds(episodes: Path, out: Path) -> float:
    from PIL import Image
    from streaming import MDSWriter

    columns = {camera: "jpeg" for camera in CAMERAS.values()}
    columns |= {"actions": "ndarray:float32", "instruction": "str"}
    staged = out.with_name(out.name + "-frames")
    staged.mkdir(parents=True)
    start = time.perf_counter()
    with MDSWriter(out=str(out), columns=columns) as writer:
        for path in sorted(episodes.glob("*.hdf5")):
            for t, sample in enumerate(episode_samples(str(path))):
                for camera in CAMERAS.values():
                    frame = staged / f"{path.stem}-{t}-{camera}.jpg"
                    frame.write_bytes(encode_jpeg(sample[camera], JPEG))
                    sample[camera] = Image.open(frame)
                writer.write(sample)
    elapsed = time.perf_counter() - start
    shutil.rmtree(staged)
    return elapsed


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


WRITERS = {"ours": write_ours, "litdata": write_litdata, "mds": write_mds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("library", choices=sorted(WRITERS))
    parser.add_argument("episodes", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("result")
    parser.add_argument("--workers", type=int, default=2, help="litdata's optimize processes")
    args = parser.parse_args()
    extra = {"workers": args.workers} if args.library == "litdata" else {}
    seconds = WRITERS[args.library](args.episodes, args.out, **extra)
    with open(args.result, "w") as f:
        json.dump({"write_s": seconds, "bytes": folder_bytes(args.out)}, f)


if __name__ == "__main__":
    main()
