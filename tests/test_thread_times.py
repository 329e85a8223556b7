"""bench.thread_times: each thread's time on a core and idle, as the kernel counts them."""

from __future__ import annotations

import threading
import time

import pytest

from bench.thread_times import thread_lines, thread_times


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def figures(line: str) -> list[float]:
    """(on a core, waiting for one, idle) of one thread_lines line."""
    words = line.split()
    return [float(words[i - 1]) for i, w in enumerate(words) if w in ("on", "waiting", "idle")]


@pytest.mark.skipif(not thread_times(), reason="no per-thread schedstat on this system")
def test_a_busy_thread_shows_on_a_core_and_a_waiting_one_idle():
    spun, done = threading.Event(), threading.Event()

    def work() -> None:
        spin(0.3)
        spun.set()
        done.wait()  # alive, and idle, while the main thread reads the times

    worker = threading.Thread(target=work)
    before, start = thread_times(), time.perf_counter()
    worker.start()
    spun.wait()  # the main thread blocks: idle
    spin(0.1)
    wall = time.perf_counter() - start
    after = thread_times()
    done.set()
    worker.join()
    lines = thread_lines(before, after, wall, samples=2)
    mains = [figures(line) for line in lines if "stream's thread" in line]
    others = [figures(line) for line in lines if "decode thread" in line]
    assert len(mains) == 1 and len(others) == 1, lines
    (main_run, _, main_idle), (other_run, _, other_idle) = mains[0], others[0]
    # Per sample, two samples: the spins' halves, and the idle stretches around them.
    assert 0.02e6 < main_run < 0.1e6 and main_idle > 0.1e6, lines
    assert 0.06e6 < other_run < 0.2e6 and other_idle > 0.03e6, lines
