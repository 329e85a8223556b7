"""`vla-train serve` under N concurrent OpenVLA-OFT-style clients, and what batching would buy.

    .venv/bin/python -m bench.serve CKPT [--clients 1,2,4,8] [--requests 16] [--device cpu]

CKPT is a step-N folder, e.g. a few steps of the tiny base on a generated set:

    vla-data generate /tmp/sv/eps --layout processed --episodes 4 --steps 30
    vla-data convert /tmp/sv/eps /tmp/sv/shards --val-episodes 1
    vla-train --shards /tmp/sv/shards --run-dir /tmp/sv/run --base tiny --max-steps 4 \\
        --batch-size 2 --save-every 4

The server runs as `vla-train serve CKPT --port 0` in its own process. Each client is a thread
that posts as OFT's clients do (json_numpy.patch(), requests.post(url, json=...), a new
connection per request) a body of 224x224 uint8 images (full_image, then one wrist image per
further camera) plus the state when the policy takes it. Per client count it prints
requests/s and the latency p50 and p99. Last, in this process, the policy's forward alone at
batch 1 and at the largest client count, per sample, in alternating rounds: the most
batching concurrent requests could save.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click
import json_numpy
import numpy as np
import requests

from trainer.inference.policy import Policy

INSTRUCTION = "pick up the cube"
WARMUP = 3  # requests before timing: the first forward builds caches


def start_server(ckpt: Path, device: str, log: Path) -> tuple[subprocess.Popen, str]:
    command = [
        sys.executable,
        "-m",
        "trainer.cli",
        "serve",
        str(ckpt),
        "--port",
        "0",
        "--device",
        device,
    ]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        for line in log.read_text().splitlines():
            if line.startswith("serving ") and "http://" in line:
                return process, line.split(" on ")[1].split()[0]
        time.sleep(0.2)
    process.kill()
    raise SystemExit(f"the server did not start:\n{log.read_text()}")


def observation(health: dict, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (224, 224, 3), dtype=np.uint8) for _ in health["cameras"]]
    obs = {"full_image": images[0], "instruction": INSTRUCTION}
    obs.update({f"wrist_{i}_image": image for i, image in enumerate(images[1:])})
    if health["proprio"]:
        obs["state"] = rng.normal(size=health["proprio"])
    return obs


def run_clients(url: str, obs: dict, clients: int, per_client: int) -> tuple[float, np.ndarray]:
    """(requests/s, every request's latency in s) for `clients` threads posting in a loop."""

    def client(_: int) -> list[float]:
        latencies = []
        for _ in range(per_client):
            start = time.perf_counter()
            response = requests.post(url, json=obs)
            response.raise_for_status()
            latencies.append(time.perf_counter() - start)
        return latencies

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = [t for batch in pool.map(client, range(clients)) for t in batch]
    return len(latencies) / (time.perf_counter() - start), np.array(latencies)


def forward_per_sample(
    ckpt: Path, device: str, health: dict, batch: int, rounds: int
) -> tuple[float, float]:
    """Median seconds per sample of Policy.predict_batch at batch 1 and at `batch`, in
    alternating rounds so that the machine's noise hits both alike."""
    policy = Policy.load(ckpt, device=device)
    obs = observation(health, 0)
    sample = [obs["full_image"], *(v for k, v in obs.items() if "wrist" in k)]
    state = obs["state"][None] if "state" in obs else None

    def per_sample(size: int) -> float:
        start = time.perf_counter()
        tiled = None if state is None else np.repeat(state, size, axis=0)
        policy.predict_batch([sample] * size, [INSTRUCTION] * size, tiled)
        return (time.perf_counter() - start) / size

    per_sample(batch)  # warm-up
    times = [(per_sample(1), per_sample(batch)) for _ in range(rounds)]
    one, many = np.median(np.array(times), axis=0)
    return float(one), float(many)


@click.command()
@click.argument("ckpt", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--clients", default="1,2,4,8", show_default=True, help="Client counts to run.")
@click.option("--requests", "per_client", default=16, show_default=True, help="Per client.")
@click.option("--device", default="cpu", show_default=True)
def main(ckpt: Path, clients: str, per_client: int, device: str) -> None:
    counts = [int(c) for c in clients.split(",")]
    json_numpy.patch()  # as OFT's clients do: requests' json= then writes arrays as json_numpy
    log = Path(f"/tmp/vla-bench-serve-{time.time_ns()}.log")
    process, url = start_server(ckpt, device, log)
    try:
        health = requests.get(url.replace("/act", "/health")).json()
        obs = observation(health, 0)
        body_kb = len(json.dumps(obs)) / 1024
        print(
            f"{ckpt}: {health['model']} on {health['device']}, cameras "
            f"{','.join(health['cameras'])}, proprio {health['proprio']}, body {body_kb:.0f} KB"
        )
        run_clients(url, obs, 1, WARMUP)
        for count in counts:
            rate, latencies = run_clients(url, obs, count, per_client)
            p50, p99 = np.percentile(latencies, [50, 99]) * 1000
            print(
                f"{count} client(s) x {per_client}: {rate:.2f} requests/s, "
                f"latency p50 {p50:.0f} ms, p99 {p99:.0f} ms"
            )
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
        log.unlink()
    largest = max(counts)
    one, many = forward_per_sample(ckpt, device, health, largest, rounds=8)
    print(
        f"forward alone, per sample: batch 1 {one * 1000:.0f} ms, batch {largest} "
        f"{many * 1000:.0f} ms ({one / many:.2f}x)"
    )


if __name__ == "__main__":
    main()
