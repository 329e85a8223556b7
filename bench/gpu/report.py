"""The GPU check's report: report.json whole, report.txt each part's figures beside the anchors."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

Part = dict[str, Any]
Anchors = dict[str, float]


class Report:
    """report.json (everything) and report.txt (one paragraph per part), rewritten on update."""

    def __init__(self, out: Path, meta: dict[str, Any], budgets: dict[str, float]) -> None:
        from bench.gpu.part_context import ANCHORS

        self.out = out
        self.meta = meta
        self.anchors = ANCHORS
        self.parts = {name: {"status": "pending", "budget_s": b} for name, b in budgets.items()}
        self.write()

    def update(self, name: str, **fields: Any) -> None:
        self.parts[name].update(fields)
        self.write()

    def write(self) -> None:
        data = {"meta": self.meta, "anchors": self.anchors, "parts": self.parts}
        text = json.dumps(data, indent=1, default=str)  # parts wrote plain JSON already
        _atomic_write(self.out / "report.json", text + "\n")
        _atomic_write(self.out / "report.txt", self.text())

    def text(self) -> str:
        return render(self.meta, self.anchors, self.parts)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def render(meta: dict[str, Any], anchors: Anchors, parts: dict[str, Part]) -> str:
    lines = [
        f"GPU check ({meta.get('mode')}), started {meta.get('started_utc')} UTC, "
        f"commit {meta.get('commit')}, total {_num(meta.get('total_s'), '.0f')} s "
        f"of {meta.get('total_budget_s')} s",
        f"command: {meta.get('command')}",
    ]
    if meta.get("preload_error"):
        lines.append(f"import before the parts failed: {meta['preload_error']}")
    if meta.get("wheels"):
        lines.append(f"wheels installed offline: {', '.join(meta['wheels']['installed'])}")
    lines.append(
        f"anchors (reference loop, batch 8, one H100): {anchors['step_s']} s/step, "
        f"{anchors['samples_per_s']} samples/s, {anchors['peak_gib']:.0f} GiB; goal <= "
        f"{anchors['goal_step_s']} s/step (moonshot {anchors['moonshot_step_s']}); "
        f"data wait < {anchors['data_wait_goal']:.0%}"
    )
    for name, part in parts.items():
        head = f"\n[{name}] {part.get('status')}"
        if "seconds" in part:
            head += f" in {part['seconds']:.0f} s (budget {part.get('budget_s'):.0f} s)"
        lines.append(head)
        if part.get("reason"):
            lines.append(f"  {part['reason']}")
        if part.get("error"):
            lines.append(f"  error: {part['error']}")
        describe = DESCRIBE.get(name)
        if describe is None:
            continue
        try:
            for line in describe(part, anchors):
                lines.append(f"  {line}")
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            # A part stopped early has only some figures: the lines above hold what it had.
            lines.append("  (no further figures: see report.json)")
    return "\n".join(lines) + "\n"


def _env(p: Part, anchors: Anchors) -> Iterator[str]:
    pkgs = p["packages"]
    yield (
        f"Python {p['python']} ({p['executable']}), {p['cpus']} CPUs; torch {pkgs['torch']} "
        f"(CUDA {p['torch_cuda']}), transformers {pkgs['transformers']}, peft {pkgs['peft']}, "
        f"timm {pkgs['timm']}, simplejpeg {pkgs['simplejpeg']}"
    )
    yield f"missing: {', '.join(n for n, v in pkgs.items() if v is None) or 'none'}"
    if "gpu" in p:
        enabled = [k for k, v in p["sdpa_enabled"].items() if v]
        yield (
            f"{p['gpu']} (sm {p['capability']}, {p['gpu_memory_gib']:.1f} GiB, "
            f"{p['multiprocessors']} SMs), cuDNN {p['cudnn']}; SDPA enabled: {', '.join(enabled)}"
        )
        yield f"nvidia-smi: {' | '.join(p['nvidia_smi'].splitlines())}"


def _step(p: Part, anchors: Anchors) -> Iterator[str]:
    if "fits" in p:
        yield f"fits: {'yes' if p['fits'] else 'no: ' + p.get('oom', '')}"
    yield (
        f"{p['base']}, batch {p['batch']}, {p['images']} images, grad checkpointing "
        f"{'on' if p['grad_checkpointing'] else 'off'}; built in {p['build_s']:.1f} s; "
        f"trainable {p['parameters']['total']:,}"
    )
    yield (
        f"{p['steps']} timed steps after {len(p['warmup_s'])} warm-up: median "
        f"{p['median_step_s']:.3f} s/step, {p['samples_per_s']:.1f} samples/s, peak "
        f"{p['peak_allocated_gib']:.1f} GiB allocated ({p['peak_reserved_gib']:.1f} reserved); "
        f"losses finite: {p['losses_finite']}"
    )
    if "vs_anchor" in p:
        v = p["vs_anchor"]
        yield (
            f"vs anchor: step {p['median_step_s']:.3f} / {anchors['step_s']} = "
            f"{v['step_ratio']:.2f}x, samples/s {v['samples_ratio']:.2f}x, peak memory "
            f"{v['peak_ratio']:.2f}x; goal <= {anchors['goal_step_s']} s "
            f"{'met' if v['goal_met'] else 'NOT met'}; moonshot "
            f"{'met' if v['moonshot_met'] else 'not met'}"
        )
    if "profile" in p:
        yield from _profile(p["profile"])
    if "autocast" in p:
        a = p["autocast"]
        by_dtype = ", ".join(f"{k} {v:.1f}" for k, v in a["gflop_by_dtype"].items())
        yield (
            f"matmul work in bf16: {a['bf16_share']:.1%} of {a['matmul_gflop']:.0f} GFLOP per "
            f"step (GFLOP by dtype: {by_dtype})"
        )
        yield f"matmul work over the median step: {p['matmul_tflop_per_s']:.3g} TFLOP/s"
        for big in a["largest_not_bf16"][:3]:
            yield f"  not bf16: {big['op']} {big['dtype']} {big['inputs']}: {big['gflop']:.2f}"


def _profile(prof: dict[str, Any]) -> Iterator[str]:
    calls = prof["sdpa"]["forward_calls_per_step"]
    backends = ", ".join(f"{k} {v}" for k, v in calls.items()) or "none seen"
    yield f"SDPA forward calls per step by backend: {backends}"
    for call in prof["sdpa"]["calls"]:
        yield (
            f"  {call['op']} query {call['query_shape']}: {call['calls']:g} calls, "
            f"{call['self_ms']:.1f} ms"
        )
    top = "; ".join(f"{t['name']} {t['self_ms']:.1f} ms" for t in prof["top_ops"][:3])
    yield f"top three ops by {prof['timed_by']} time per step: {top}"
    if prof.get("device_ms_per_step") is not None:
        yield f"kernel time per profiled step: {prof['device_ms_per_step']:.1f} ms"
    if prof.get("trace"):
        yield f"trace: {prof['trace']} ({prof['trace_mib']:.1f} MiB)"


def _loop(p: Part, anchors: Anchors) -> Iterator[str]:
    s, o = p["shard_set"], p["options"]
    yield (
        f"set: {s['train_samples']} train samples in {s['train_shards']} shards, "
        f"{s['bytes'] / 2**20:.0f} MiB (generated in {s['generate_s']:.0f} s, converted in "
        f"{s['convert_s']:.0f} s)"
    )
    yield (
        f"vla-train, {p['steps']} steps, workers {o['workers']}, decode threads "
        f"{o['decode_threads']} ({o.get('loader', 'as given')}), shuffle buffer "
        f"{o['shuffle_buffer']}; first step {p['first_step_s']:.2f} s"
    )
    yield (
        f"data wait {p['data_wait_share']:.2%} of step time over the last "
        f"{p['steps'] - p['skipped_steps']} steps (goal < {anchors['data_wait_goal']:.0%}: "
        f"{'met' if p['data_wait_goal_met'] else 'NOT met'}; worst step "
        f"{p['data_wait_max']:.1%}); median {p['median_step_s']:.3f} s/step, "
        f"{p['samples_per_s']:.1f} samples/s; losses finite: {p['losses_finite']}"
    )
    yield f"whole vla-train run {p['train_s']:.0f} s; --decode auto chose: {p.get('decode', '?')}"


def _learn_tiny(p: Part, anchors: Anchors) -> Iterator[str]:
    def verdict(ok: bool) -> str:
        return "pass" if ok else "FAIL"

    yield f"tiny base, {p['steps']} steps in {p['train_s']:.0f} s"
    yield (
        f"train L1 {p['train_l1']:.3f} = {p['train_ratio']:.2f}x the best constant "
        f"(< {p['train_bound']}: {verdict(p['train_pass'])}); held-out {p['held_l1']:.3f} = "
        f"{p['held_ratio']:.2f}x (< {p['held_bound']}: {verdict(p['held_pass'])})"
    )
    if "curve_max_gap" in p:
        yield (
            f"smoothed loss at most {p['curve_max_gap']:.3f} from the CPU reference curve "
            f"(the CPU test allows {p['curve_cpu_tolerance']})"
        )
    yield (
        f"blank images: held-out {p['blank_ratio']:.2f}x the constant "
        f"(> {p['blank_bound']}: {verdict(p['blank_pass'])})"
    )


def _learn_7b(p: Part, anchors: Anchors) -> Iterator[str]:
    yield (
        f"{p['base']}, batch {p['batch']}, {p['steps']} of {p['steps_asked']} steps on the "
        f"learnable set; median {p['median_step_s']:.3f} s/step"
    )
    norms = p["grad_norm"]
    yield (
        f"loss {p['loss_first']:.3f} (first steps) -> {p['loss_last']:.3f} (last); grad norm "
        f"{min(norms):.3g} to {max(norms):.3g}; all finite: {p['finite']}"
    )


def _decode(p: Part, anchors: Anchors) -> Iterator[str]:
    if "not_run" in p:
        yield f"not run: {p['not_run']}"
        return
    s = p["shard_set"]
    yield f"set: {s['train_samples']} train samples in {s['train_shards']} shards; {p['loader']}"
    for batch in (8, 32):
        b = p[f"b{batch}"]
        yield (
            f"batch {batch}: CPU decode {b['cpu_samples_per_s']:.0f} samples/s, GPU decode "
            f"{b['device_samples_per_s']:.0f} ({b['device_over_cpu']:.2f}x); medians of "
            f"{p['rounds']} alternating rounds each"
        )
        if "bound_samples_per_s" in b:  # reports made before the bound was measured lack it
            yield (
                f"batch {batch}: the CPU loader reached {b['cpu_share_of_bound']:.0%} of bare "
                f"JPEG decoding on {b['bound_threads']} threads "
                f"({b['bound_samples_per_s']:.0f} samples/s; goal 70%)"
            )
    px = p["pixels"]
    yield (
        f"GPU against CPU pixels, {px['images']} images: max gap {px['max']} levels, mean "
        f"{px['mean']:.3f}, {px['equal_share']:.1%} equal"
    )
    a = p["auto_b8"]
    yield (
        f"--decode auto at the anchor's {a['step_s']} s/step, batch 8: {a['where']} "
        f"(wait share {a['wait_share']:.1%}: {a['reason']})"
    )


def _num(value: Any, fmt: str) -> str:
    return format(value, fmt) if isinstance(value, (int, float)) and math.isfinite(value) else "?"


DESCRIBE: dict[str, Callable[[Part, Anchors], Iterator[str]]] = {
    "env": _env,
    "step_b8": _step,
    "step_b16_gc": _step,
    "loop": _loop,
    "learn_tiny": _learn_tiny,
    "learn_7b": _learn_7b,
    "decode": _decode,
}
