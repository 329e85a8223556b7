"""Our shard loader against the common alternative, a map-style HDF5 Dataset, side by side.

    .venv/bin/python -m bench.loader [--episodes 20 --steps 100 --batch-size 8
                                      --samples 3000 --rounds 3 --compare-workers 2]

Both sides load the same episodes, two cameras (head, left_wrist), up to a batch ready to go
to the device:
- shards, default: `vla-train loadtest`'s loader (trainer.run.loadtest: the trainer's loader and
  its prompt tokenization) with no flags, i.e. the worker processes and decode threads that
  `auto` chooses for this machine, over a set converted from the episodes;
- shards with N worker processes, and with N decode threads in this process
  (`--compare-workers N`), to show what `auto` chose against; and N worker processes that
  decode into their ring of reused buffers, as when batches are pinned for a GPU (without
  CUDA nothing is pinned, so the training process clones the images out instead);
- hdf5: a torch map-style Dataset that, per sample, reads both 256x256 frames at t with
  h5py, resizes them 256 -> 224 with PIL (bicubic), normalizes to float and slices
  action[t:t+8] (the padding rule of the shards), shuffled by a DataLoader with one worker
  process per core this process may use;
- LeRobot v3, when the `lerobot` package is installed (bench/lerobot_loader.py): the same
  episodes written by LeRobot's own writer at 224x224, read by its own Dataset with 8-step
  action chunks, one worker process per core.
Rounds alternate the variants; it prints each one's median samples/s, bytes read per
sample, and the ratios to the hdf5 baseline (and to LeRobot). Last, the peak RSS of
`vla-train loadtest` with its defaults (its whole process tree) on the set and on one 4x
larger, and their ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from bench import lerobot_loader
from bench.process_peak import run_measured
from bench.scratch import scratch_dir
from pipeline.config import ConvertConfig
from pipeline.convert.stages import convert
from pipeline.generate.synthetic import GenerateConfig, generate
from shards.loader_plan import available_cores
from trainer.run.loadtest import LoadtestConfig, loadtest

CAMERAS = ("head_camera_image", "left_wrist_image")
VLA_TRAIN = str(Path(sys.executable).with_name("vla-train"))
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


class HDF5Frames(Dataset):
    """The per-sample HDF5 path many OpenVLA fine-tuning forks use (read, resize, normalize)."""

    def __init__(self, paths: list[Path], chunk: int = 8) -> None:
        self.paths = paths
        self.chunk = chunk
        self.index = []
        for e, path in enumerate(paths):
            with h5py.File(path, "r") as f:
                self.index += [(e, t) for t in range(f["action"].shape[0])]
        self._files: dict[int, h5py.File] = {}  # opened lazily, per worker process

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        e, t = self.index[i]
        f = self._files.get(e)
        if f is None:
            f = self._files[e] = h5py.File(self.paths[e], "r")
        images = []
        for name in CAMERAS:
            frame = Image.fromarray(f[name][t]).resize((224, 224), Image.Resampling.BICUBIC)
            images.append((np.asarray(frame, np.float32) / 255.0 - MEAN) / STD)
        actions = f["action"][t : t + self.chunk]
        if len(actions) < self.chunk:
            pad = np.repeat(f["action"][-1:], self.chunk - len(actions), axis=0)
            actions = np.concatenate([actions, pad])
        return {
            "images": torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2),
            "actions": torch.from_numpy(actions.astype(np.float32)),
        }


def samples_per_s(loader: DataLoader, samples: int, key: str) -> float:
    """Batches of `loader` until `samples` samples, after the shard side's warm-up of 5 batches
    (so worker start-up stays out), in samples/s; `key` names the action chunk of a batch."""
    batches = iter(loader)
    for _ in range(5):
        next(batches)
    seen, start = 0, time.perf_counter()
    while seen < samples:
        try:
            seen += len(next(batches)[key])
        except StopIteration:
            batches = iter(loader)
    return seen / (time.perf_counter() - start)


def loadtest_variants(shards: str, args: argparse.Namespace) -> dict[str, LoadtestConfig]:
    """The trainer's loader as auto sets it up, and with worker processes or threads alone."""
    n = args.compare_workers
    return {
        "shards, default (auto)": LoadtestConfig(shards, batch_size=args.batch_size,
                                                 samples=args.samples),
        f"shards, {n} worker processes": LoadtestConfig(
            shards, n, args.batch_size, samples=args.samples, decode_threads=0),
        f"shards, {n} worker processes, reused buffers": LoadtestConfig(
            shards, n, args.batch_size, samples=args.samples, decode_threads=0,
            pin_memory=True),
        f"shards, {n} decode threads": LoadtestConfig(
            shards, 0, args.batch_size, samples=args.samples, decode_threads=n),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--samples", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compare-workers", type=int, default=2)
    args = parser.parse_args()

    root = scratch_dir()
    paths = generate(GenerateConfig(root / "eps", episodes=args.episodes, steps=args.steps))
    two_cameras = ("head", "left_wrist")
    convert(ConvertConfig(root / "eps", shards_dir=root / "shards", val_episodes=0,
                          cameras=two_cameras, shard_samples=250, progress=False))  # fmt: skip
    cores, source = available_cores()
    variants = loadtest_variants(str(root / "shards"), args)
    hdf5 = DataLoader(HDF5Frames(paths), batch_size=args.batch_size, shuffle=True,
                      num_workers=cores)  # fmt: skip
    others = {"hdf5": (hdf5, "actions")}
    if lerobot_loader.installed():
        lerobot_loader.write_dataset(paths, root / "lerobot")
        others["lerobot"] = (lerobot_loader.data_loader(root / "lerobot", cores,
                                                        args.batch_size), "action")  # fmt: skip
    rates: dict[str, list[float]] = {name: [] for name in [*variants, *others]}
    ours_bytes, plan = 0.0, None
    for _ in range(args.rounds):
        for name, config in variants.items():
            result = loadtest(config)
            rates[name].append(result.samples_per_s)
            ours_bytes = result.bytes_read / result.samples
            plan = plan or result.plan
        for name, (loader, key) in others.items():
            rates[name].append(samples_per_s(loader, args.samples, key))

    hdf5_bytes = len(CAMERAS) * 256 * 256 * 3 + 8 * 14 * 4  # two raw frames + 8 action rows
    print(f"{args.episodes} episodes x {args.steps} steps, batch={args.batch_size}, "
          f"head+left_wrist, {args.rounds} rounds, {cores} cores ({source})")  # fmt: skip
    print(f"default {plan.line()}")
    for name in variants:
        report(name, rates[name], ours_bytes)
    report(f"hdf5 Dataset, {cores} workers", rates["hdf5"], hdf5_bytes)
    if "lerobot" in rates:
        name = f"LeRobot v3 Dataset, {cores} workers"
        report(name, rates["lerobot"], lerobot_bytes(root), "stored")
    for other in others:
        base = statistics.median(rates[other])
        for name in variants:
            print(f"ratio {name} / {other}: {statistics.median(rates[name]) / base:.2f}x")
    if "lerobot" not in rates:
        print("LeRobot v3: not compared (the lerobot package is not installed)")
    peak_rss(root, args)


def peak_rss(root: Path, args: argparse.Namespace) -> None:
    """Peak RSS of `vla-train loadtest` (defaults) on the set and on a 4x larger one."""
    larger = root / "shards-4x"
    generate(GenerateConfig(root / "eps-4x", episodes=4 * args.episodes, steps=args.steps))
    convert(ConvertConfig(root / "eps-4x", shards_dir=larger, val_episodes=0,
                          cameras=("head", "left_wrist"), shard_samples=250,
                          progress=False))  # fmt: skip
    peaks = []
    for shards in (root / "shards", larger):
        cmd = [VLA_TRAIN, "loadtest", str(shards), "--batch-size", str(args.batch_size),
               "--samples", str(args.samples)]  # fmt: skip
        peaks.append(run_measured(cmd)[1])
    mib = 1 << 20
    print(f"peak RSS of vla-train loadtest: {args.episodes} episodes {peaks[0] / mib:.0f} MiB, "
          f"{4 * args.episodes} episodes {peaks[1] / mib:.0f} MiB, "
          f"ratio {peaks[1] / peaks[0]:.2f}")  # fmt: skip


def lerobot_bytes(root: Path) -> float:
    """Bytes of the LeRobot set's videos and tables per frame (its loader decodes more: a
    frame's video decoding starts at the keyframe before it)."""
    files = [p for p in (root / "lerobot").rglob("*") if p.is_file() and p.suffix != ".json"]
    with open(root / "lerobot" / "meta" / "info.json") as f:
        frames = json.load(f)["total_frames"]
    return sum(p.stat().st_size for p in files) / frames


def report(name: str, rates: list[float], bytes_per_sample: float, what: str = "read") -> None:
    rounds = ", ".join(f"{x:.0f}" for x in rates)
    print(f"{name:<32}{statistics.median(rates):8.1f} samples/s (rounds: {rounds}), "
          f"{bytes_per_sample / 1e3:.1f} kB {what}/sample")  # fmt: skip


if __name__ == "__main__":
    main()
