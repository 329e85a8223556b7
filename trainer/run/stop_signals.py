"""SIGTERM and SIGINT as "stop after this step"; a second one as "stop now"."""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType

from common.errors import UserError

# sysexits.h EX_TEMPFAIL, "try again later": the run stopped on request and can be resumed.
STOPPED_EXIT = 75
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class RunStopped(UserError):
    """The run saved and stopped because it was asked to: resumable, so its own exit code."""

    exit_code = STOPPED_EXIT


class StopSignals:
    """While entered, the first SIGTERM or SIGINT sets `requested` (the loop saves and stops
    after the step in progress); a second one ends the process at once, saving nothing.

    Outside the main thread (where Python cannot set handlers) it does nothing.
    """

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.requested is not None:
            sys.stderr.write(f"{name} again: stopping now, without saving this step\n")
            sys.stderr.flush()
            os._exit(128 + signum)
        self.requested = name
        sys.stderr.write(f"{name}: saving after this step, then stopping ({name} again: now)\n")
        sys.stderr.flush()

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
