"""Run a command and sample the peak RSS of its whole process tree (parent and workers)."""

from __future__ import annotations

import subprocess
import threading
import time

import psutil


def run_measured(cmd: list[str]) -> tuple[float, int]:
    """Wall time and peak RSS (bytes, summed over the process tree, sampled every 20 ms)."""
    start = time.perf_counter()
    proc = psutil.Popen(cmd, stdout=subprocess.DEVNULL)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            try:
                tree = [proc, *proc.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = proc.wait()
    elapsed = time.perf_counter() - start
    done.set()
    sampler.join()
    if code != 0:
        raise SystemExit(f"{' '.join(cmd[:2])} failed with exit code {code}")
    return elapsed, peak
