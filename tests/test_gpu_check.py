"""The GPU check (bench/gpu): the CPU smoke run's report, part isolation, budgets, probes."""

from __future__ import annotations

import gzip
import json
import math
import os
import statistics
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from bench.gpu import check as gpu_check
from bench.gpu.decode_part import auto_pick, compare_rounds, decode, pixel_gap
from bench.gpu.loop_figures import loop_figures
from bench.gpu.part_context import SMOKE, Context, Recorder
from bench.gpu.parts import PARTS
from bench.gpu.probes import matmul_dtypes, profile_steps
from bench.gpu.report import DESCRIBE
from shards.loader_plan import available_cores, plan_loader

ROOT = Path(__file__).resolve().parent.parent


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def _share(value) -> bool:
    return isinstance(value, float) and 0 <= value <= 1


def test_cpu_smoke_runs_every_part_and_reports_finite_figures(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "bench.gpu.check", "--cpu-smoke", "--out", str(out),
         "--work", str(tmp_path / "work")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    report = json.loads((out / "report.json").read_text())
    parts = report["parts"]
    assert list(parts) == list(PARTS)
    for name, part in parts.items():
        assert part["status"] == "ok", (name, part.get("error"), part.get("log_tail"))
        assert _positive(part["seconds"])
    assert report["meta"]["mode"] == "cpu-smoke"
    assert report["anchors"]["step_s"] == 0.698

    assert parts["env"]["packages"]["torch"] == torch.__version__.split("+")[0]

    _check_step_b8(parts["step_b8"], out)

    b16 = parts["step_b16_gc"]
    assert b16["fits"] is True and b16["grad_checkpointing"] is True
    assert b16["batch"] == SMOKE.big_batch and _positive(b16["median_step_s"])

    loop = parts["loop"]
    assert loop["steps"] == SMOKE.loop_steps and loop["skipped_steps"] == SMOKE.loop_skip
    plan = plan_loader()  # vla-train's default, "auto", on this machine
    assert (loop["options"]["workers"], loop["options"]["decode_threads"]) == (
        plan.workers,
        plan.decode_threads,
    )
    assert _share(loop["data_wait_share"]) and _positive(loop["median_step_s"])
    assert loop["losses_finite"] and loop["bad_samples"] == 0
    assert _positive(loop["shard_set"]["train_samples"])

    # No CUDA: the decode part says so and measures nothing; the loop's auto decoded on the CPU.
    assert parts["decode"]["not_run"].startswith("training on the CPU, not a CUDA GPU")
    assert loop["decode"] == "cpu"
    _check_learning(parts)

    text = (out / "report.txt").read_text()
    for name in PARTS:
        assert f"[{name}] ok" in text
    assert "no further figures" not in text


def _check_step_b8(b8: dict, out: Path) -> None:
    """The smoke run's batch-8 step: its timings, profile, trace and autocast coverage."""
    assert b8["batch"] == SMOKE.batch and b8["steps"] == SMOKE.steps == len(b8["step_s"])
    for key in ("median_step_s", "samples_per_s", "peak_allocated_gib", "build_s"):
        assert _positive(b8[key]), key
    assert all(_positive(t) for t in b8["step_s"]) and b8["losses_finite"]
    assert "vs_anchor" not in b8  # the anchors are 7B-on-CUDA figures
    sdpa = b8["profile"]["sdpa"]
    # The tiny base runs attention in both towers and in its Llama layers, every one by SDPA.
    assert sum(sdpa["forward_calls_per_step"].values()) > 0
    assert all(c["backend"] in ("flash", "efficient", "cudnn", "math") for c in sdpa["calls"])
    top_ops = b8["profile"]["top_ops"]
    assert len(top_ops) >= 3 and all(_positive(op["self_ms"]) for op in top_ops)
    assert not any(op["name"].startswith(("ProfilerStep", "Optimizer")) for op in top_ops)
    with gzip.open(out / b8["profile"]["trace"]) as trace:  # the smoke run always writes it
        assert json.load(trace)["traceEvents"]
    coverage = b8["autocast"]
    assert _positive(coverage["matmul_gflop"])
    assert coverage["bf16_share"] == 0.0  # exact float32 on the CPU, as the trainer runs there
    assert _positive(b8["matmul_tflop_per_s"])


def _check_learning(parts: dict) -> None:
    """The smoke run's learning parts: figures there, of the right kinds."""
    learn = parts["learn_tiny"]
    assert learn["steps"] == SMOKE.learn_steps
    for key in ("train_ratio", "held_ratio", "blank_ratio", "train_constant", "held_constant"):
        assert _positive(learn[key]), key
    assert all(isinstance(learn[k], bool) for k in ("train_pass", "held_pass", "blank_pass"))

    long = parts["learn_7b"]
    assert long["steps"] == SMOKE.long_steps == len(long["grad_norm"]) == len(long["loss"])
    assert long["finite"] and all(_positive(g) for g in long["grad_norm"])


def test_loop_data_wait_is_total_wait_over_total_time_after_the_first_steps():
    def record(step_s: float, wait: float, loss: float = 0.5) -> dict:
        return {"samples_per_s": 8 / step_s, "data_wait": wait, "loss": loss,
                "bad_shards": 0, "bad_samples": 0}  # fmt: skip

    # Step 1 (workers starting) is left out; then 1 s waiting 10%, 3 s waiting 0%.
    records = [record(5.0, 0.9), record(1.0, 0.1), record(3.0, 0.0)]
    figures = loop_figures(records, batch=8, skip=1, goal=0.01)
    assert figures["data_wait_share"] == pytest.approx(0.1 / 4)
    assert figures["median_step_s"] == pytest.approx(2.0)
    assert figures["first_step_s"] == pytest.approx(5.0)
    assert figures["data_wait_goal_met"] is False and figures["skipped_steps"] == 1
    assert loop_figures(records[:1], 8, 1, 0.01)["data_wait_share"] is None


def test_decode_part_compares_alternating_rounds_and_says_what_auto_picks(toy_shards):
    # The CPU side of the part: torchvision decodes on the CPU here, nvJPEG on the GPU machine.
    plan = plan_loader(0, 1)
    rates = compare_rounds(toy_shards, plan, 2, ("head", "left_wrist"), torch.device("cpu"), 2, 3)
    assert len(rates["cpu_rounds"]) == len(rates["device_rounds"]) == 2
    assert all(_positive(r) for r in rates["cpu_rounds"] + rates["device_rounds"])
    assert rates["device_over_cpu"] == pytest.approx(
        rates["device_samples_per_s"] / rates["cpu_samples_per_s"]
    )
    # The decode bound on every core, timed in each round beside the loader.
    assert len(rates["bound_rounds"]) == 2 and all(_positive(r) for r in rates["bound_rounds"])
    assert rates["bound_threads"] == available_cores()[0]
    shares = [c / b for c, b in zip(rates["cpu_rounds"], rates["bound_rounds"], strict=True)]
    assert rates["cpu_share_of_bound"] == pytest.approx(statistics.median(shares))
    # torchvision's CPU decode is libjpeg-turbo, as simplejpeg's: no gap (nvJPEG's is measured).
    gap = pixel_gap(toy_shards, ("head", "left_wrist"), torch.device("cpu"))
    assert gap == {"images": 64, "max": 0, "mean": 0.0, "equal_share": 1.0}
    # A loader of 100 samples/s fills a batch of 8 in 0.08 s, within a 0.7 s step: no wait.
    fed = auto_pick(100.0, 8, 0.7)
    assert fed["where"] == "cpu" and fed["wait_share"] == 0.0
    starved = auto_pick(5.0, 8, 0.7)  # 1.6 s a batch: each step waits 0.9 s of 1.6
    assert starved["where"] == "device" and starved["wait_share"] == pytest.approx(0.9 / 1.6)
    # The report gives the loader's share of the bound for each batch size.
    part = {"shard_set": {"train_samples": 64, "train_shards": 1}, "loader": plan.line(),
            "rounds": 2, "b8": rates, "b32": rates, "pixels": gap, "auto_b8": fed}  # fmt: skip
    lines = list(DESCRIBE["decode"](part, {}))
    share = f"{rates['cpu_share_of_bound']:.0%} of bare JPEG decoding on {available_cores()[0]}"
    assert sum(share in line for line in lines) == 2, lines


def test_decode_part_without_cuda_records_why_it_did_not_run(tmp_path):
    rec = Recorder(tmp_path / "decode.json")
    decode(_context(tmp_path, 60), rec)
    saved = json.loads((tmp_path / "decode.json").read_text())
    assert saved == {"not_run": "training on the CPU, not a CUDA GPU: no device decode to measure"}


def _context(tmp_path: Path, budget_s: float) -> Context:
    return Context(
        torch.device("cpu"), SMOKE, tmp_path, tmp_path, time.monotonic() + budget_s, "never"
    )


def test_a_part_past_its_budget_is_stopped_and_keeps_what_it_recorded(tmp_path):
    def slow(ctx, rec):
        rec.set(before="recorded", pid=os.getpid())
        time.sleep(60)  # far past the budget; a part left running would end "ok" instead
        rec.set(after="finished")

    report = gpu_check.Report(tmp_path, {"mode": "test"}, {"slow": 1.0})
    gpu_check.run_part("slow", slow, _context(tmp_path, 1.0), report, tmp_path)
    saved = json.loads((tmp_path / "report.json").read_text())["parts"]["slow"]
    assert saved["status"] == "timed_out" and saved["before"] == "recorded"
    assert "after" not in saved
    with pytest.raises(ProcessLookupError):  # the part's process was killed and reaped
        os.kill(saved["pid"], 0)


def test_a_failing_part_is_recorded_and_the_next_one_runs(tmp_path):
    def broken(ctx, rec):
        rec.set(before="recorded")
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    def fine(ctx, rec):
        rec.set(value=1.5)

    report = gpu_check.Report(tmp_path, {"mode": "test"}, {"broken": 30, "fine": 30})
    gpu_check.run_part("broken", broken, _context(tmp_path, 30), report, tmp_path)
    gpu_check.run_part("fine", fine, _context(tmp_path, 30), report, tmp_path)
    saved = json.loads((tmp_path / "report.json").read_text())["parts"]
    assert saved["broken"]["status"] == "failed" and saved["broken"]["before"] == "recorded"
    assert "illegal memory access" in saved["broken"]["error"]
    assert saved["fine"]["status"] == "ok" and saved["fine"]["value"] == 1.5
    text = (tmp_path / "report.txt").read_text()
    assert "[broken] failed" in text and "illegal memory access" in text


def test_a_part_runs_in_a_spawned_child_too(tmp_path):
    # The fallback when a forked child could not use CUDA: the part is pickled by name.
    report = gpu_check.Report(tmp_path, {"mode": "test"}, {"env": 120})
    gpu_check.run_part("env", PARTS["env"], _context(tmp_path, 120), report, tmp_path, "spawn")
    saved = json.loads((tmp_path / "report.json").read_text())["parts"]["env"]
    assert saved["status"] == "ok", saved
    assert saved["packages"]["torch"] == torch.__version__.split("+")[0]


def test_wheels_install_offline_into_the_scratch_folder(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _write_wheel(wheels / "gpucheckdemo-1.0-py3-none-any.whl")
    site = tmp_path / "site"
    info = gpu_check.install_wheels(wheels, site)
    assert info["installed"] == ["gpucheckdemo-1.0-py3-none-any.whl"]
    # Importable by a process that has the folder on PYTHONPATH, as the check's child has.
    env = {**os.environ, "PYTHONPATH": info["site"]}
    done = subprocess.run(
        [sys.executable, "-c", "import gpucheckdemo; print(gpucheckdemo.VALUE)"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.stdout.strip() == "42", done.stderr
    with pytest.raises(SystemExit, match="no .whl files"):
        gpu_check.install_wheels(tmp_path / "empty", site)


def _write_wheel(path: Path) -> None:
    """The smallest wheel pip installs: a module and its dist-info."""
    info = "gpucheckdemo-1.0.dist-info"
    files = {
        "gpucheckdemo.py": "VALUE = 42\n",
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: gpucheckdemo\nVersion: 1.0\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    record = "".join(f"{name},,\n" for name in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as wheel:
        for name, text in {**files, f"{info}/RECORD": record}.items():
            wheel.writestr(name, text)


class _Attend(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(16, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.proj(x).view(2, 2, 8, 8)
        return F.scaled_dot_product_attention(q, q, q).sum()


def test_profile_names_the_sdpa_backend_that_ran():
    model, x = _Attend(), torch.randn(2, 8, 16)
    with sdpa_kernel(SDPBackend.MATH):
        forced = profile_steps(lambda: model(x).backward(), torch.device("cpu"), 1)
    assert forced["sdpa"]["forward_calls_per_step"] == {"math": 1}
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        fused = profile_steps(lambda: model(x).backward(), torch.device("cpu"), 2)
    assert fused["sdpa"]["forward_calls_per_step"] == {"flash": 1}
    assert any(c["backward"] and c["backend"] == "flash" for c in fused["sdpa"]["calls"])


def test_matmul_dtypes_sees_what_autocast_ran():
    model, x = _Attend(), torch.randn(2, 8, 16)
    exact = matmul_dtypes(lambda: model(x).backward())
    assert exact["bf16_share"] == 0.0 and set(exact["gflop_by_dtype"]) == {"float32"}
    # Two (16 x 16) @ (16 x 16) products of 2 * 16^3 FLOPs: the projection forward and its
    # weight gradient (x needs none). CPU attention has no FLOP formula and is not counted.
    assert exact["matmul_gflop"] == pytest.approx(2 * 2 * 16**3 / 1e9)
    assert exact["largest_not_bf16"][0]["dtype"] == "float32"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cast = matmul_dtypes(lambda: model(x).float().backward())
    assert cast["bf16_share"] == 1.0 and cast["largest_not_bf16"] == []
    assert cast["matmul_gflop"] == pytest.approx(exact["matmul_gflop"])
