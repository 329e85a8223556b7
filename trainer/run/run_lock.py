"""One run per run folder: an advisory flock on RUN_DIR/run.lock, held for the run's life."""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import socket
from pathlib import Path

from common.errors import UserError

LOCK_FILE = "run.lock"
log = logging.getLogger(__name__)


class RunBusyError(UserError):
    """Another live process holds the run folder."""


def check_run_dir(run_dir: Path, flag: str = "--run-dir") -> None:
    """A folder, or a path where one can be made: refused before any model is loaded."""
    if run_dir.is_symlink() and not run_dir.exists():
        raise UserError(f"{flag} {run_dir}: a symlink to {os.readlink(run_dir)}, which is missing")
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"{flag} {run_dir}: a file, not a folder; choose a folder")
    for parent in run_dir.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"{flag} {run_dir}: {parent} is a file, not a folder")
            break


class RunLock:
    """flock(LOCK_EX) on RUN_DIR/run.lock; the file names the holder's pid and host.

    The kernel drops the lock when the process ends however it ends, so the lock of a killed
    run is simply taken over. On a filesystem without working flock the run goes on with a
    warning: the user then keeps one run per folder themselves (docs/RELIABILITY.md).
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self.fd: int | None = None

    def acquire(self) -> RunLock:
        check_run_dir(self.path.parent)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunBusyError(
                f"{self.path.parent} is in use by another run ({holder}); wait for it to end, "
                "or choose another --run-dir"
            ) from None
        except OSError as exc:
            if exc.errno not in (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                os.close(fd)
                raise
            log.warning(
                "%s: the filesystem does not support locks (%s); make sure no other run uses "
                "this folder", self.path, exc.strerror,
            )  # fmt: skip
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the flock; the file stays for the next run
            self.fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
