"""Our whole conversion of an RLDS set beside tensorflow-datasets' own bare read of it.

    .venv/bin/python -m bench.convert_rlds [--tfds-python /tmp/tfds-venv/bin/python
        --episodes 10 --steps 40 --side 256 --workers 2 --rounds 3]

TensorFlow is no dependency of ours: `--tfds-python` is a throwaway venv's interpreter with
tensorflow-cpu and tensorflow-datasets (see tests/assets/make_rlds_fixtures.py, whose
builder writes the set here: OFT's LIBERO features, two JPEG cameras of SIDE x SIDE).
Each round, alternating, times (a) `convert()` in this process: read, check, decode,
resize to 224, JPEG-encode and write shards, stats and manifest; and (b) in a subprocess,
iterating `tfds.builder_from_directory(...).as_dataset()` to numpy, every step's frames
decoded, and nothing else. Interpreter and import start-up are outside both timings.
Prints the median steps/s of each and their ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from pathlib import Path

from bench.scratch import scratch_dir
from pipeline.config import ConvertConfig
from pipeline.convert.stages import convert

ROOT = Path(__file__).resolve().parents[1]
GENERATOR = ROOT / "tests" / "assets" / "make_rlds_fixtures.py"

# Runs in the tfds venv: the bare read, timed from the first record to the last frame.
TFDS_READ = """
import json, sys, time
import tensorflow_datasets as tfds
builder = tfds.builder_from_directory(sys.argv[1])
start = time.perf_counter()
dataset = tfds.as_numpy(builder.as_dataset(split="train"))
built = time.perf_counter()
steps = 0
for episode in dataset:
    for step in episode["steps"]:
        obs = step["observation"]
        steps += obs["image"].shape[0] > 0 and obs["wrist_image"].shape[0] > 0
end = time.perf_counter()
print(json.dumps({"seconds": end - start, "reading": end - built, "steps": int(steps)}))
"""


def tfds_read(python: str, version_dir: Path) -> dict:
    """Seconds from as_dataset() to the last frame, of those the iteration alone, and steps."""
    out = subprocess.run(
        [python, "-c", TFDS_READ, str(version_dir)], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def ours(version_dir: Path, out: Path, workers: int) -> float:
    config = ConvertConfig(
        version_dir, shards_dir=out, workers=workers, progress=False, val_episodes=0,
        overwrite=True,
    )  # fmt: skip
    start = time.perf_counter()
    convert(config)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tfds-python", default="/tmp/tfds-venv/bin/python")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--side", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    root = scratch_dir()
    cmd = [args.tfds_python, str(GENERATOR), str(root), "--bench"]
    subprocess.run([*cmd, str(args.episodes), str(args.steps), str(args.side)], check=True,
                   capture_output=True)  # fmt: skip
    version_dir = root / "libero_bench" / "1.0.0"
    ours_s, tfds_runs = [], []
    for _ in range(args.rounds):  # alternate, so drift hits both alike
        ours_s.append(ours(version_dir, root / "shards", args.workers))
        tfds_runs.append(tfds_read(args.tfds_python, version_dir))
        assert tfds_runs[-1]["steps"] == args.episodes * args.steps, tfds_runs[-1]
    total = args.episodes * args.steps
    ours_rate = total / statistics.median(ours_s)
    tfds_rate = total / statistics.median(r["seconds"] for r in tfds_runs)
    reading_rate = total / statistics.median(r["reading"] for r in tfds_runs)
    print(f"set: {args.episodes} episodes x {args.steps} steps, 2 JPEG cameras "
          f"{args.side}x{args.side}; median of {args.rounds} rounds")  # fmt: skip
    print(f"vla-data convert (workers={args.workers}, decode+resize+JPEG+write): "
          f"{ours_rate:7.1f} steps/s")  # fmt: skip
    print(f"tfds as_dataset to numpy (bare read, frames decoded):        {tfds_rate:7.1f} steps/s")
    print(
        f"  of which iterating the built tf.data pipeline alone:        {reading_rate:7.1f} steps/s"
    )
    print(f"ratio ours / tfds: {ours_rate / tfds_rate:.2f} "
          f"(against its iteration alone: {ours_rate / reading_rate:.2f})")  # fmt: skip


if __name__ == "__main__":
    main()
