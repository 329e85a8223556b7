"""Our shards beside the streaming libraries users would pick instead: MosaicML Streaming, litdata.

    .venv-peers/bin/python -m bench.peers [--episodes 20 --steps 100 --samples 1600 --rounds 3]
    (make bench-peers builds .venv-peers: the peers and their pins stay out of our venv)

The same episodes are written by each library's own writer (bench/peers_write.py: the same
224 px JPEG bytes of head and left_wrist, the same 8x14 action chunks and instruction), then
read by each library's own streaming dataset through a DataLoader at batch 8, decoded to
uint8 tensors (bench/peers_read.py), from the local folder and from S3 (moto's server on
loopback, as the remote tests use; all three read s3:// URLs, the peers through a local
cache they download shards into, ours streaming). Every write and read runs in a process of
its own, its process tree's peak RSS sampled; rounds alternate the libraries and the figures
are medians. Last, the decode bound: the same frames' JPEG bytes, already in memory, decoded
by one thread per core with our decoder, and our local read as a share of it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from bench.decode_threads import decode_bound, frames_of
from bench.peers_write import CAMERAS, SIDE
from bench.process_peak import run_measured
from bench.scratch import scratch_dir, temp_files_into
from pipeline.generate.synthetic import GenerateConfig, generate
from shards.loader_plan import available_cores, plan_loader
from shards.source import open_shard_set
from tests.s3_fixtures import moto_s3, upload_folder

LIBRARIES = ("ours", "litdata", "mds")
NAMES = {"ours": "ours (vla-shards)", "litdata": "litdata", "mds": "MosaicML Streaming"}
BUCKET = "bench"
MIB = 1 << 20


def child(module: str, args: list[str], result: Path) -> dict[str, float]:
    """`python -m module args... result` in its own process: its JSON result and peak RSS."""
    _, peak = run_measured([sys.executable, "-m", module, *args, str(result)])
    return {**json.loads(result.read_text()), "rss": peak}


def s3_environment(endpoint: str) -> None:
    """The children reach moto the way users reach an S3-compatible store: boto3 (ours,
    litdata) reads AWS_ENDPOINT_URL, MosaicML Streaming its own S3_ENDPOINT_URL."""
    os.environ |= {"AWS_ENDPOINT_URL": endpoint, "S3_ENDPOINT_URL": endpoint,
                   "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                   "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip
    import boto3

    boto3.session.Session().client("s3").create_bucket(Bucket=BUCKET)


def upload(out: Path, library: str) -> str:
    import boto3

    upload_folder(boto3.session.Session().client("s3"), out, BUCKET, library)
    return f"s3://{BUCKET}/{library}" + ("/" if library == "ours" else "")


def run_rounds(root: Path, args: argparse.Namespace, endpoint: str | None) -> dict:
    """Each round: every library writes the set, then reads its first copy from each source."""
    results: dict[tuple[str, str], list[dict[str, float]]] = defaultdict(list)
    sources: dict[str, dict[str, str]] = defaultdict(dict)
    read = ["--batch-size", str(args.batch_size), "--workers", str(args.workers),
            "--samples", str(args.samples)]  # fmt: skip
    for r in range(args.rounds):
        for lib in LIBRARIES:
            out = root / f"{lib}-{r}"
            written = child("bench.peers_write", [lib, str(root / "eps"), str(out),
                                                  "--workers", str(args.workers)],
                            root / "result.json")  # fmt: skip
            results[lib, "write"].append(written)
            if r > 0:  # only the first round's copies are read
                shutil.rmtree(out)
            else:
                sources["local"][lib] = str(out)
                if endpoint:
                    sources["s3"][lib] = upload(out, lib)
        for where, urls in sources.items():
            for lib, url in urls.items():
                cache = ["--cache", str(root / f"cache-{lib}-{r}")]
                got = child("bench.peers_read", [lib, url, *cache, *read], root / "result.json")
                results[lib, where].append(got)
        frames = frames_of(open_shard_set(sources["local"]["ours"]), list(CAMERAS.values()))
        bound = decode_bound(frames, SIDE, args.workers, args.samples)
        results["decode", "bound"].append({"samples_per_s": bound})
        done = [f"{lib} {where} {results[lib, where][-1]['samples_per_s']:.0f}"
                for where in sources for lib in sources[where]]  # fmt: skip
        print(
            f"round {r + 1}, samples/s: {', '.join(done)}, decode bound {bound:.0f}",
            file=sys.stderr,
            flush=True,
        )  # a long run shows where it is
    return results


def median(results: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in results)


def report(results: dict, args: argparse.Namespace, samples: int) -> None:
    plan = plan_loader("auto", "auto")
    print(f"{samples} samples ({args.episodes} episodes x {args.steps} steps), head+left_wrist "
          f"{SIDE} px JPEG, batch {args.batch_size}, {args.rounds} round(s), "
          f"{args.samples} samples timed per read")  # fmt: skip
    print(f"ours: trainer defaults, {plan.line()}; peers: {args.workers} DataLoader worker "
          f"processes")  # fmt: skip
    print(f"{'write':<24}{'seconds':>9}{'kB/sample':>11}{'peak RSS MiB':>14}")
    for lib in LIBRARIES:
        w = results[lib, "write"]
        kb = median(w, "bytes") / samples / 1e3
        print(f"  {NAMES[lib]:<22}{median(w, 'write_s'):9.2f}{kb:11.1f}"
              f"{median(w, 'rss') / MIB:14.0f}")  # fmt: skip
    for where, title in (("local", "read, local folder"), ("s3", "read, S3 (moto, loopback)")):
        if (LIBRARIES[0], where) not in results:
            continue
        print(f"{title:<24}{'samples/s':>11}{'first batch s':>15}{'peak RSS MiB':>14}  rounds")
        for lib in LIBRARIES:
            got = results[lib, where]
            rounds = ", ".join(f"{r['samples_per_s']:.0f}" for r in got)
            print(f"  {NAMES[lib]:<22}{median(got, 'samples_per_s'):11.1f}"
                  f"{median(got, 'first_batch_s'):15.2f}{median(got, 'rss') / MIB:14.0f}"
                  f"  {rounds}")  # fmt: skip
    bound = median(results["decode", "bound"], "samples_per_s")
    ours = median(results["ours", "local"], "samples_per_s")
    print(
        f"decode bound: bare JPEG decode of the same frames, {args.workers} threads: "
        f"{bound:.1f} samples/s; ours (local) reaches {100 * ours / bound:.0f}% of it"
    )
    peer = max(LIBRARIES[1:], key=lambda lib: median(results[lib, "local"], "samples_per_s"))
    best = median(results[peer, "local"], "samples_per_s")
    print(f"ours / best peer: {ours / best:.2f}x samples/s ({NAMES[peer]})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--samples", type=int, default=1600, help="samples timed per read")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--workers",
        type=int,
        default=available_cores()[0],
        help="the peers' DataLoader worker processes (default: the cores)",
    )
    parser.add_argument("--no-s3", action="store_true", help="read from the local folder only")
    args = parser.parse_args()

    root = scratch_dir()
    temp_files_into(root)
    generate(GenerateConfig(root / "eps", episodes=args.episodes, steps=args.steps))
    if args.no_s3:
        results = run_rounds(root, args, None)
    else:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
        with moto_s3() as endpoint:
            s3_environment(endpoint)
            results = run_rounds(root, args, endpoint)
    report(results, args, args.episodes * args.steps)


if __name__ == "__main__":
    main()
