"""Run one function over many jobs in worker processes, in job order, with a progress bar."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)

R = TypeVar("R")


def progress_bar(enabled: bool, unit: str = "") -> Progress:
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
    ]
    return Progress(*columns, disable=not enabled, transient=False)


def _ready(_: int) -> None:
    """A no-op job: submitting one per worker makes the pool fork them all now."""


def _die_with_parent(parent: int) -> None:
    """Worker start-up: end this worker once its parent is gone.

    A SIGKILLed parent cannot shut its pool down, and its workers would otherwise go on
    encoding (or wait for jobs) forever, holding memory and the staging folder's files.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


class WorkerPool:
    """Worker processes kept for a whole conversion, so planning and encoding share one start-up.

    With one worker everything runs in this process (simplest to debug, same results).
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> WorkerPool:
        if self.workers > 1:
            # fork is ~0.3 s faster to start than spawn, which re-imports everything. It is safe
            # because the workers are forked right here, before this process has opened any
            # HDF5 file or started a thread (progress bars come later).
            context = multiprocessing.get_context("fork")
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=context,
                initializer=_die_with_parent,
                initargs=(os.getpid(),),
            )
            list(self._pool.map(_ready, range(self.workers)))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def run_ordered(
        self,
        fn: Callable[..., R],
        jobs: Sequence[tuple[Any, ...]],
        label: str,
        progress: bool,
        units: Callable[[R], int] | None = None,
        total: int | None = None,
        unit_name: str = "episodes",
    ) -> list[R]:
        """`[fn(*job) for job in jobs]` spread over the workers, results in job order.

        `units(result)` says how far a finished job moves the bar (default 1), out of
        `total`. Results come back in job order whatever the worker count, which is what
        makes the converter's output independent of `--workers`.
        """
        units = units or (lambda _: 1)
        results: list[R] = []
        with progress_bar(progress) as bar:
            task = bar.add_task(label, total=total if total is not None else len(jobs), rate="")
            done = 0
            if self._pool is None or len(jobs) <= 1:
                outputs = (fn(*job) for job in jobs)
            else:
                outputs = self._pool.map(fn, *zip(*jobs, strict=True))
            for result in outputs:
                results.append(result)
                done += units(result)
                elapsed = bar.tasks[0].elapsed or 0.0
                rate = f"{done / elapsed:,.0f} {unit_name}/s" if elapsed > 0 else ""
                bar.update(task, advance=units(result), rate=rate)
        return results
