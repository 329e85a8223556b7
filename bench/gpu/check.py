"""The GPU check in one command: the 7B step, batch 16, vla-train's data wait, learning on the
GPU, JPEGs decoded on the CPU or the GPU.

    python3 -m bench.gpu.check --out OUT [--wheels DIR]     # one CUDA GPU, under 9 minutes
    python3 -m bench.gpu.check --out OUT --cpu-smoke        # same code, tiny sizes, on a CPU

(from the repository root; bench/gpu/check.sh OUT does that).

Each part (bench.gpu.parts.PARTS) runs in a child process of its own, with its own time
budget: one that fails, runs out of memory or outlives its budget is recorded as such and
the next part starts on a clean device. Children are forked from a parent that has imported
everything but never touched CUDA, so they start at once; if a forked child cannot use CUDA
after all (an import initialized it), they are spawned instead. OUT/report.json and
OUT/report.txt are rewritten while the parts run, so a run killed from outside still leaves
what it had measured. Only the standard library is imported before --wheels is installed
(pip --no-index, into the scratch folder; the check then runs again in a child process
with that folder first on PYTHONPATH): nothing is fetched from the network.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime
import json
import math
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.gpu.report import Report

ROOT = Path(__file__).resolve().parents[2]
WHEELS_SITE = "GPU_CHECK_WHEELS"  # set in the child that runs with the installed wheels
PART_BUDGET_S = {  # the H200's expected times are about half of these
    "env": 30,
    "step_b8": 150,
    "step_b16_gc": 120,
    "loop": 150,
    "learn_tiny": 120,
    "learn_7b": 100,
    "decode": 90,
}
TOTAL_BUDGET_S = 540  # under 9 minutes, start-up and wheels included
SMOKE_PART_BUDGET_S = 300  # generous: the smoke run checks code paths, not speed
SMOKE_TOTAL_BUDGET_S = 1200
MIN_PART_S = 10  # a part with less time left than this is skipped, not started
POLL_S = 2.0
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    started = time.monotonic()
    total = args.total_s or (SMOKE_TOTAL_BUDGET_S if args.cpu_smoke else TOTAL_BUDGET_S)
    work = Path(args.work or tempfile.mkdtemp(prefix="gpu_check_"))
    work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.wheels and WHEELS_SITE not in os.environ:
        return _with_wheels(args, argv, work)
    wheels = json.loads(os.environ[WHEELS_SITE]) if args.wheels else None
    # A library asking torch.cuda.is_available() while we import would initialize CUDA in
    # the parent, and forked children could then not use it; NVML answers without that.
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    preload_error = preload()

    import torch  # after the wheels, and only now: a child forks from here

    from bench.gpu.part_context import GPU, SMOKE, Context
    from bench.gpu.parts import PARTS

    names = args.parts.split(",") if args.parts else list(PARTS)
    unknown = [n for n in [*names, *args.budget] if n not in PARTS]
    if unknown:
        raise SystemExit(f"gpu check: unknown part(s) {', '.join(unknown)}; use {list(PARTS)}")
    budgets = {n: SMOKE_PART_BUDGET_S if args.cpu_smoke else PART_BUDGET_S[n] for n in names}
    budgets.update(args.budget)
    report = Report(
        args.out,
        {
            "mode": "cpu-smoke" if args.cpu_smoke else "gpu",
            "started_utc": _utc_now(),
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "commit": _commit(),
            "wheels": wheels,
            "preload_error": preload_error,
            "total_budget_s": total,
        },
        budgets,
    )
    device = torch.device("cpu" if args.cpu_smoke else "cuda")
    method = args.start_method
    if method == "auto":
        method = "fork" if device.type == "cpu" or fork_can_use_cuda() else "spawn"
    report.meta["start_method"] = method
    sizes = SMOKE if args.cpu_smoke else GPU
    trace = "always" if args.cpu_smoke and args.trace == "auto" else args.trace
    for name in names:
        left = total - (time.monotonic() - started)
        budget = min(budgets[name], left)
        if budget < min(MIN_PART_S, budgets[name]):
            report.update(name, status="skipped", reason=f"{left:.0f} s of the total left")
            continue
        deadline = time.monotonic() + budget
        ctx = Context(device, sizes, work, args.out, deadline, trace)
        run_part(name, PARTS[name], ctx, report, work, method)
    report.meta["total_s"] = time.monotonic() - started
    report.write()
    print(report.text())
    if not args.keep_work and not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(p["status"] == "ok" for p in report.parts.values()) else 1


def run_part(
    name: str, part: Any, ctx: Any, report: Report, work: Path, method: str = "fork"
) -> None:
    """Run one part in a child until it ends or its deadline; record what it left.

    With `method` "spawn", `part` must be a module-level function (it is pickled by name).
    """
    results, log = work / f"part-{name}.json", work / f"part-{name}.log"
    results.unlink(missing_ok=True)
    start = time.monotonic()
    report.update(name, status="running")
    print(f"{name}: running (budget {ctx.deadline - start:.0f} s)", flush=True)
    child = multiprocessing.get_context(method).Process(
        target=_child, args=(part, ctx, results, log), name=f"gpu_check-{name}"
    )
    child.start()
    while child.is_alive() and time.monotonic() < ctx.deadline:
        child.join(timeout=min(POLL_S, max(0.0, ctx.deadline - time.monotonic())))
        report.update(name, **_read(results))
    status = "ok"
    if child.is_alive():
        _kill(child)
        status = "timed_out"
    elif child.exitcode != 0:
        status = "failed"
    fields = _read(results)
    if status == "failed" and "error" not in fields:
        fields["error"] = f"the part's process ended with exit code {child.exitcode}"
    if status != "ok":
        fields["log_tail"] = _tail(log)
    report.update(name, status=status, seconds=time.monotonic() - start, **fields)
    with open(report.out / "parts.log", "a") as combined:
        combined.write(f"===== {name}: {status} =====\n{_tail(log, 200_000)}\n")
    print(f"{name}: {status} in {time.monotonic() - start:.0f} s", flush=True)


def _child(part: Any, ctx: Any, results: Path, log: Path) -> None:
    """In the child: own process group (so a kill takes its loader workers), own log."""
    os.setpgrp()
    _die_with_parent()
    with open(log, "w") as stream:
        os.dup2(stream.fileno(), 1)
        os.dup2(stream.fileno(), 2)
    from bench.gpu.part_context import Recorder

    rec = Recorder(results)
    code = 0
    try:
        part(ctx, rec)
    except BaseException as exc:  # recorded, then the parent reads it: the run goes on
        rec.fail(exc)
        traceback_text = rec.data.get("traceback", "")
        print(traceback_text, file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _die_with_parent() -> None:
    """SIGKILL this process when the parent dies: a check stopped from outside must not leave
    a part running on the GPU (its own process group would outlive a kill of the parent's)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() == 1:  # the parent was already gone before prctl
            os._exit(1)


def fork_can_use_cuda() -> bool:
    """Whether a child forked from here can run a CUDA op (no import initialized CUDA)."""
    child = multiprocessing.get_context("fork").Process(target=_cuda_canary)
    child.start()
    child.join(timeout=120)
    if child.is_alive():
        _kill(child)
    return child.exitcode == 0


def _cuda_canary() -> None:
    import torch

    torch.ones(1, device="cuda").add_(1).item()


def _kill(child: multiprocessing.Process) -> None:
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:  # killed before it had its own group
        child.kill()
    child.join()


def _with_wheels(args: argparse.Namespace, argv: list[str] | None, work: Path) -> int:
    """Install --wheels into the scratch folder, then run the check again in a child that has
    them first on PYTHONPATH (and so do the parts' processes it starts)."""
    wheels = install_wheels(args.wheels, work / "site")
    path = [wheels["site"], os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, WHEELS_SITE: json.dumps(wheels), "PYTHONPATH": os.pathsep.join(path)}
    again = [*(sys.argv[1:] if argv is None else argv), "--work", str(work)]
    code = subprocess.run([sys.executable, "-m", "bench.gpu.check", *again], env=env).returncode
    if not args.keep_work and not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return code


def install_wheels(folder: Path, site: Path) -> dict[str, Any]:
    """pip --no-index --no-deps the folder's wheels into `site` (importable with `site` first
    on PYTHONPATH)."""
    wheels = sorted(folder.glob("*.whl")) if folder.is_dir() else []
    if not wheels:
        raise SystemExit(f"gpu check: {folder}: no .whl files (bench/gpu/wheels.txt)")
    command = [
        sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
        "--no-cache-dir", "--disable-pip-version-check", "--upgrade", "--target", str(site),
        *map(str, wheels),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"gpu check: installing the wheels in {folder} failed:\n{done.stderr}")
    return {"folder": str(folder), "installed": [w.name for w in wheels], "site": str(site)}


def preload() -> str | None:
    """Import the parts' modules once here, so each forked child starts with them loaded.

    Nothing may touch CUDA before the fork; importing does not. A failure is only recorded:
    each part imports what it needs again and fails, or not, on its own.
    """
    try:
        import bench.gpu.loop_figures  # noqa: F401
        import bench.gpu.probes  # noqa: F401
        import bench.gpu.step  # noqa: F401
        import pipeline.convert.stages  # noqa: F401
        import tests.learning_fixtures  # noqa: F401
        import trainer.data.device_decode  # noqa: F401
        import trainer.run.loop  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - recorded in the report
        return f"{type(exc).__name__}: {exc}"
    return None


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="report.json, report.txt, trace")
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny model and sizes, on CPU")
    parser.add_argument("--wheels", type=Path, help="folder of wheels to install first, offline")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    parser.add_argument("--keep-work", action="store_true", help="keep the temporary scratch")
    parser.add_argument("--parts", help="comma-separated subset of the parts, in run order")
    parser.add_argument(
        "--budget", action="append", default=[], type=_budget, metavar="PART=SECONDS",
        help="another time budget for a part (repeatable)",
    )  # fmt: skip
    parser.add_argument("--total-s", type=float, help="budget of the whole run")
    parser.add_argument(
        "--start-method", choices=("auto", "fork", "spawn"), default="auto",
        help="how part processes start; auto forks unless that leaves CUDA unusable",
    )  # fmt: skip
    parser.add_argument(
        "--trace", choices=("auto", "always", "never"), default="auto",
        help="profiler trace of the batch-8 step: auto = when slower than the anchor",
    )  # fmt: skip
    args = parser.parse_args(argv)
    args.budget = dict(args.budget)
    return args


def _budget(text: str) -> tuple[str, float]:
    name, _, seconds = text.partition("=")
    try:
        value = float(seconds)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not PART=SECONDS") from None
    if not name or not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not PART=SECONDS with SECONDS > 0")
    return name, value


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # not written yet, or caught mid-replace
        return {}


def _tail(path: Path, chars: int = 3000) -> str:
    with contextlib.suppress(OSError):
        return path.read_text(errors="replace")[-chars:]
    return ""


def _utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _commit() -> str | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=10,
        )  # fmt: skip
        return done.stdout.strip() or None
    return None


if __name__ == "__main__":
    sys.exit(main())
