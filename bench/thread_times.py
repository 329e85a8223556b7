"""Where each thread of this process spent a stretch of wall time, from Linux's schedstat.

For every thread: time on a core, time runnable but waiting for one, and the rest, idle:
blocked on a lock, a queue or the GIL, or on I/O. A loader whose decode threads idle while
the stream's thread runs is held up by that thread's Python, not by decoding.
"""

from __future__ import annotations

import os
from pathlib import Path

TASKS = Path("/proc/self/task")


def thread_times() -> dict[int, tuple[int, int]]:
    """{thread id: (ns on a core, ns waiting for a core)} of this process's live threads;
    empty where the kernel keeps no schedstat (not Linux, or schedstats off)."""
    times = {}
    for task in TASKS.glob("*") if TASKS.is_dir() else ():
        try:
            run, wait = (task / "schedstat").read_text().split()[:2]
        except (OSError, ValueError):
            continue  # ended since the listing, or no such file
        times[int(task.name)] = (int(run), int(wait))
    return times


def thread_lines(
    before: dict[int, tuple[int, int]],
    after: dict[int, tuple[int, int]],
    wall_s: float,
    samples: int,
    busy_share: float = 0.02,
) -> list[str]:
    """One line per thread that ran more than `busy_share` of `wall_s` between two
    thread_times() readings: on a core, waiting for one and idle, in microseconds per sample."""
    lines = []
    wall_us = wall_s * 1e6
    for tid, (run, wait) in sorted(after.items()):
        run0, wait0 = before.get(tid, (0, 0))
        run_us, wait_us = (run - run0) / 1e3, (wait - wait0) / 1e3
        if run_us < busy_share * wall_us:
            continue
        idle_us = max(0.0, wall_us - run_us - wait_us)
        who = "stream's thread" if tid == os.getpid() else "decode thread"
        lines.append(
            f"  {who:<16}{run_us / samples:7.0f} on a core {wait_us / samples:6.0f} waiting for "
            f"one {idle_us / samples:7.0f} idle  (us/sample)"
        )
    return lines
