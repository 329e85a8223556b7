"""What ran inside a training step: the SDPA backends, the costliest ops, bf16's share of matmuls.

Both probes watch the trainer's real step. The profiler sees every op as the dispatcher
enters it, composites included, so it names the attention backend SDPA chose (flash,
memory-efficient, cuDNN or math). A dispatch mode sees the ops after autocast has cast
their inputs, so it tells which matmul work really ran in bf16.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile, schedule
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

# Substrings of the aten op names each SDPA backend runs under, forward and backward.
SDPA_BACKENDS = {
    "flash": "_scaled_dot_product_flash_attention",
    "efficient": "_scaled_dot_product_efficient_attention",
    "cudnn": "_scaled_dot_product_cudnn_attention",
    "math": "_scaled_dot_product_attention_math",
}
TOP_OPS = 10


def profile_steps(
    run: Callable[[], Any], device: torch.device, steps: int, trace: Path | None = None
) -> dict[str, Any]:
    """Profile `steps` calls of `run`; SDPA calls per backend, top ops and kernels per step.

    With `trace`, the Chrome trace is written there (gzipped when the name ends in .gz).
    """
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    # One warm-up call under the profiler keeps its own start-up out of the recorded steps.
    plan = schedule(wait=0, warmup=1, active=steps, repeat=1)
    with profile(activities=activities, record_shapes=True, schedule=plan) as prof:
        for _ in range(1 + steps):
            run()
            if cuda:
                torch.cuda.synchronize(device)
            prof.step()
    if trace is not None:
        prof.export_chrome_trace(str(trace))
    timed_by = "device" if cuda else "cpu"
    ops, kernels = [], []
    for event in prof.key_averages():
        # Named ranges (the schedule's ProfilerStep, the optimizer's step) span whole ops: on
        # the GPU their "kernel" time is the whole range's. Only ops and kernels are costs.
        if getattr(event, "is_user_annotation", False) or event.key.startswith("ProfilerStep"):
            continue
        row = {
            "name": event.key,
            "calls": event.count / steps,
            "self_ms": _self_us(event, cuda) / steps / 1000,
        }
        (kernels if _is_device_event(event) else ops).append(row)
    return {
        "profiled_steps": steps,
        "timed_by": timed_by,
        "sdpa": sdpa_calls(prof, steps, cuda),
        "top_ops": _top(ops),
        "top_kernels": _top(kernels),
        "device_ms_per_step": sum(k["self_ms"] for k in kernels) if cuda else None,
        "trace": trace.name if trace is not None else None,
        "trace_mib": trace.stat().st_size / 2**20 if trace is not None else None,
    }


def sdpa_calls(prof: profile, steps: int, cuda: bool) -> dict[str, Any]:
    """Per backend: forward calls per step; and per (op, query shape) calls and self time."""
    forward: Counter[str] = Counter()
    calls = []
    for event in prof.key_averages(group_by_input_shape=True):
        backend = sdpa_backend(event.key)
        if backend is None:
            continue
        backward = "backward" in event.key
        if not backward:
            forward[backend] += event.count // steps
        shapes = event.input_shapes or [[]]
        calls.append(
            {
                "op": event.key,
                "backend": backend,
                "backward": backward,
                "query_shape": list(shapes[0]),
                "calls": event.count / steps,
                "self_ms": _self_us(event, cuda) / steps / 1000,
            }
        )
    calls.sort(key=lambda c: -c["self_ms"])
    return {"forward_calls_per_step": dict(forward), "calls": calls}


def sdpa_backend(op_name: str) -> str | None:
    for backend, marker in SDPA_BACKENDS.items():
        if marker in op_name:
            return backend
    return None


class MatmulDtypes(TorchDispatchMode):
    """FLOPs of every matmul, convolution and fused attention op, by the dtype it ran in."""

    def __init__(self) -> None:
        super().__init__()
        self.flops: Counter[str] = Counter()
        self.by_op: Counter[tuple[str, str, str]] = Counter()  # (op, dtype, input shapes)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            tensors = [a for a in args if isinstance(a, torch.Tensor)]
            dtype = str(tensors[0].dtype).removeprefix("torch.") if tensors else "none"
            flops = formula(*args, **kwargs, out_val=out)
            shapes = " ".join(str(tuple(t.shape)) for t in tensors[:3])
            self.flops[dtype] += flops
            self.by_op[(str(func._overloadpacket), dtype, shapes)] += flops
        return out


def matmul_dtypes(run: Callable[[], Any]) -> dict[str, Any]:
    """bf16's share of one call's matmul FLOPs, and the largest matmuls that ran in float32."""
    mode = MatmulDtypes()
    with mode:
        run()
    total = sum(mode.flops.values())
    others = sorted(
        (f, op, dtype, shapes)
        for (op, dtype, shapes), f in mode.by_op.items()
        if dtype != "bfloat16"
    )[::-1]
    return {
        "matmul_gflop": total / 1e9,
        "gflop_by_dtype": {k: v / 1e9 for k, v in sorted(mode.flops.items())},
        "bf16_share": mode.flops["bfloat16"] / total if total else 0.0,
        "largest_not_bf16": [
            {"op": op, "dtype": dtype, "inputs": shapes, "gflop": f / 1e9}
            for f, op, dtype, shapes in others[:5]
        ],
    }


def _self_us(event: Any, cuda: bool) -> float:
    if not cuda:
        return event.self_cpu_time_total
    # torch < 2.4 knew device time as cuda time.
    return getattr(event, "self_device_time_total", None) or event.self_cuda_time_total


def _is_device_event(event: Any) -> bool:
    return event.device_type != torch.autograd.DeviceType.CPU


def _top(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = [r for r in rows if r["self_ms"] > 0]
    return sorted(rows, key=lambda r: -r["self_ms"])[:TOP_OPS]


def nvidia_smi() -> str | None:
    """The GPU, driver, clocks, power and temperature as nvidia-smi reports them."""
    query = "name,driver_version,clocks.sm,clocks.max.sm,power.draw,power.limit,temperature.gpu"
    try:
        done = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv"],
            capture_output=True, text=True, timeout=20, check=True,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unavailable: {exc}"
    return done.stdout.strip()
