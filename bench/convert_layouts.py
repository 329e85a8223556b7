"""Conversion speed of LIBERO and LeRobot v3 inputs against the processed layout, same content.

    .venv/bin/python -m bench.convert_layouts [--workers 2 --episodes 10 --steps 100]

Writes the same episodes (two 256x256 cameras, 7-dim actions) three ways, as the public
tools lay them out (tests/layout_fixtures.py): RoboTwin's processed files (one per episode,
raw frames), LIBERO demo files (five demos per file, frames upside down) and a LeRobot v3.0
folder (one parquet file, one AV1 video per camera, LeRobot's encoder settings). Then runs
`vla-data convert --workers N` on each, alternating, and prints the median samples/s of
each beside the processed layout's and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.scratch import scratch_dir
from tests.layout_fixtures import (  # the layout writers the tests check against
    write_lerobot_v3,
    write_libero,
    write_processed,
)

VLA_DATA = str(Path(sys.executable).with_name("vla-data"))
SIZE = 256  # OpenVLA-OFT's regenerated LIBERO frames


def write_inputs(root: Path, episodes: int, steps: int) -> dict[str, Path]:
    folders = {name: root / name for name in ("processed", "libero", "lerobot")}
    for i in range(episodes):
        write_processed(folders["processed"] / f"episode_{i}.hdf5", steps, i, SIZE)
    per_file = 5
    for f in range(0, episodes, per_file):
        demos = [steps] * min(per_file, episodes - f)
        write_libero(folders["libero"] / f"TASK{f}_do_the_task_demo.hdf5", demos, f, "do it", SIZE)
    write_lerobot_v3(folders["lerobot"], [steps] * episodes, [f"task {i}" for i in range(episodes)],
                     fps=20, size=SIZE, wrist_as_image=False)  # fmt: skip
    return folders


def convert_seconds(src: Path, workers: int) -> float:
    out = Path(tempfile.mkdtemp()) / "shards"
    cmd = [VLA_DATA, "convert", str(src), str(out), "--workers", str(workers), "--quiet",
           "--val-episodes", "0"]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    subprocess.run(["rm", "-rf", str(out.parent)], check=True)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    root = scratch_dir()
    folders = write_inputs(root, args.episodes, args.steps)
    times: dict[str, list[float]] = {name: [] for name in folders}
    for _ in range(args.repeats):  # alternate, so drift hits every layout alike
        for name, folder in folders.items():
            times[name].append(convert_seconds(folder, args.workers))
    samples = args.episodes * args.steps
    rates = {name: samples / statistics.median(t) for name, t in times.items()}
    print(f"input: {args.episodes} episodes x {args.steps} steps x 2 cameras {SIZE}x{SIZE}, "
          f"workers={args.workers}, median of {args.repeats}")  # fmt: skip
    for name, rate in rates.items():
        ratio = rate / rates["processed"]
        print(f"convert {name:9s}: {rate:7.1f} samples/s   ratio to processed: {ratio:.2f}")
    subprocess.run(["rm", "-rf", str(root)], check=True)


if __name__ == "__main__":
    main()
