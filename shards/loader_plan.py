"""How many loading processes and decode threads a rank gets: `auto` from the cores it has.

One rule for `vla-train`, `vla-train loadtest` and the benchmarks. JPEG decoding is most of
the loader's work and simplejpeg releases the GIL, so threads in the training process decode
in parallel without any inter-process traffic: on few cores that is the fastest way. With
many cores one process's Python (tar parsing, collation) becomes the limit, so worker
processes each run a few decode threads.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

AUTO = "auto"
# Up to this many cores per rank, threads in the training process beat worker processes:
# measured on 2 cores (bench/loader.py), a worker's batches cost a shared-memory segment and
# a queue hop each, and the workers compete with the training process for the same cores.
FEW_CORES = 4
THREADS_PER_WORKER = 2  # one decoding while the other parses the tar and collates
MAX_WORKERS = 16  # past this, more processes only add memory and start-up time
CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class LoaderPlan:
    """Worker processes and decode threads of one rank, and why."""

    workers: int
    decode_threads: int
    reason: str

    def line(self) -> str:
        if self.workers == 0:
            where = f"the training process with {self.decode_threads} decode thread(s)"
        else:
            threads = f"{self.decode_threads} decode thread(s) each"
            where = f"{self.workers} worker process(es), {threads}"
        return f"loader: {where} ({self.reason})"


def parse_count(value: str | int, option: str) -> str | int:
    """`auto` or a count >= 0, as given on a command line; ValueError names the option."""
    if value == AUTO:
        return AUTO
    try:
        count = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{option} must be 'auto' or a whole number, got {value!r}") from None
    if count < 0:
        raise ValueError(f"{option} must not be negative, got {count}")
    return count


def plan_counts(
    cores: int, ranks: int, workers: str | int = AUTO, threads: str | int = AUTO
) -> tuple[int, int]:
    """(workers, decode threads) for one of `ranks` ranks sharing `cores`; explicit values stay."""
    per_rank = max(1, cores // max(1, ranks))
    if workers == AUTO:
        if per_rank <= FEW_CORES:
            workers = 0
        else:
            per_worker = THREADS_PER_WORKER if threads == AUTO else max(1, int(threads))
            # One core stays with the training process (the step, or feeding the GPU).
            workers = min(MAX_WORKERS, max(1, (per_rank - 1) // per_worker))
    if threads == AUTO:
        threads = per_rank if workers == 0 else max(1, min(THREADS_PER_WORKER, per_rank // workers))
    return int(workers), int(threads)


def cgroup_cpu_limit(root: Path = CGROUP_ROOT) -> float | None:
    """CPUs allowed by the cgroup's quota (v2 cpu.max, or v1 cfs quota/period); None if unset."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 or period <= 0 else quota / period
    except (OSError, ValueError):
        return None


def available_cores() -> tuple[int, str]:
    """Cores this process may use (affinity, then the cgroup quota), and where that came from."""
    try:
        cores, source = len(os.sched_getaffinity(0)), "CPU affinity"
    except AttributeError:  # not on Linux
        cores, source = os.cpu_count() or 1, "CPU count"
    limit = cgroup_cpu_limit()
    if limit is not None and math.floor(limit) < cores:
        cores, source = max(1, math.floor(limit)), "cgroup CPU quota"
    return cores, source


def ranks_per_node() -> int:
    """Ranks sharing this machine: torchrun's LOCAL_WORLD_SIZE, 1 when not launched by it."""
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return 1


def plan_loader(workers: str | int = AUTO, threads: str | int = AUTO) -> LoaderPlan:
    """The plan for this process: `auto` values chosen from its cores and ranks per node."""
    if workers != AUTO and threads != AUTO:
        return LoaderPlan(int(workers), int(threads), "as given")
    cores, source = available_cores()
    ranks = ranks_per_node()
    chosen = plan_counts(cores, ranks, workers, threads)
    per_rank = max(1, cores // ranks)
    if workers == AUTO:
        how = "threads in the training process" if chosen[0] == 0 else "worker processes"
        size = "few" if per_rank <= FEW_CORES else "many"
        choice = f"{size} cores, {how}"
    else:
        choice = "--workers as given, decode threads to fit"
    reason = (
        f"auto: {cores} core(s) by {source}, {ranks} rank(s) on this machine, so {per_rank} "
        f"per rank: {choice}"
    )
    return LoaderPlan(*chosen, reason)
