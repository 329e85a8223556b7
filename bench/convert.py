"""Conversion speed against the bare image work, and peak memory as the input grows.

    .venv/bin/python -m bench.convert [--workers 2 --steps 50 --repeats 3]

Prints, measured side by side in one run (alternating, medians):
- samples/s of `vla-data convert --workers N` on a 10-episode input, and samples/s of the
  bare image work alone (read frames, resize to 224, JPEG-encode; same N processes) on the
  same episodes, and their ratio;
- peak RSS of the whole convert process tree (parent + workers, sampled every 20 ms) for a
  10- and a 40-episode input, and their ratio;
- the time `vla-data generate` took to write the 10-episode input (`make demo` and the
  benches start from its episodes).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from bench.process_peak import run_measured
from bench.scratch import scratch_dir
from pipeline.generate.synthetic import GenerateConfig, generate
from pipeline.inputs.layout import EpisodeRef
from pipeline.inputs.registry import input_layout
from shards.format import JpegStorage, encode_jpeg, resize_square

VLA_DATA = str(Path(sys.executable).with_name("vla-data"))


def bare_episode(path: Path, size: int, quality: int) -> int:
    """The irreducible work of one episode: read every frame, resize, encode. Returns images."""
    n = 0
    with input_layout("processed").open_episode(EpisodeRef(path, path.name)) as episode:
        info = episode.info()
        for cam in info.cameras:
            for start in range(0, info.steps, 32):
                for frame in episode.frames(cam, start, min(start + 32, info.steps)):
                    encode_jpeg(resize_square(frame, size), JpegStorage(quality))
                    n += 1
    return n


def time_bare(episodes: list[Path], workers: int) -> float:
    start = time.perf_counter()
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        list(pool.map(bare_episode, episodes, [224] * len(episodes), [95] * len(episodes)))
    return time.perf_counter() - start


def run_convert(src: Path, workers: int) -> tuple[float, int]:
    """Wall time and peak RSS (bytes, summed over the process tree) of one conversion."""
    out = Path(tempfile.mkdtemp()) / "shards"
    cmd = [VLA_DATA, "convert", str(src), str(out), "--workers", str(workers), "--quiet"]
    measured = run_measured(cmd)
    subprocess.run(["rm", "-rf", str(out.parent)], check=True)
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=200)  # RoboTwin episodes run 200-400
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    root = scratch_dir()
    small, large = root / "small", root / "large"
    start = time.perf_counter()
    generate(GenerateConfig(small, episodes=10, steps=args.steps, seed=1))
    generate_s = time.perf_counter() - start
    generate(GenerateConfig(large, episodes=40, steps=args.steps, seed=2))
    episodes = [ref.path for ref in input_layout("processed").list_episodes(small)]
    samples = 10 * args.steps

    convert_s, bare_s, rss_small, rss_large = [], [], [], []
    for _ in range(args.repeats):  # alternate, so drift hits both sides alike
        elapsed, peak = run_convert(small, args.workers)
        convert_s.append(elapsed)
        rss_small.append(peak)
        bare_s.append(time_bare(episodes, args.workers))
        rss_large.append(run_convert(large, args.workers)[1])

    convert_rate = samples / statistics.median(convert_s)
    bare_rate = samples / statistics.median(bare_s)
    mib = 1 << 20
    print(f"input: 10 episodes x {args.steps} steps x 4 cameras 256x256, workers={args.workers}")
    print(f"convert (whole CLI, incl. start-up): {convert_rate:8.1f} samples/s")
    print(f"bare image work (read+resize+encode): {bare_rate:8.1f} samples/s")
    print(f"ratio convert / bare: {convert_rate / bare_rate:.2f}")
    small_peak, large_peak = statistics.median(rss_small), statistics.median(rss_large)
    print(f"peak RSS, 10 episodes: {small_peak / mib:.0f} MiB", end="; ")
    print(f"40 episodes: {large_peak / mib:.0f} MiB")
    print(f"ratio 40 / 10 episodes: {large_peak / small_peak:.2f}")
    print(f"generate, 10 episodes: {generate_s:.2f} s")
    subprocess.run(["rm", "-rf", str(root)], check=True)


if __name__ == "__main__":
    main()
