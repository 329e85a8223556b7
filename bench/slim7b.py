"""The slim 7B (openvla-7b's widths, 2 Llama layers) on CPU: peak RSS, step time, checkpoint
sizes, and the per-layer figures (parameters, saved activations, layer inputs) that
trainer/run/memory_plan.py scales to the 7B's depth.

Trains through the trainer's own `train` on a toy shard set (14 action dims, 8-step chunks,
two cameras), then counts what autograd saves in one forward pass per module: each Llama
layer, each ViT block, the rest. Saved tensors are counted once per storage and parameters
not at all, so the figure is the activation memory a backward pass would hold.
"""

from __future__ import annotations

import resource
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import click
import torch

from tests.shard_fixtures import write_toy_shards
from trainer.data.batches import DeviceBatch
from trainer.model import ActionModel, ModelConfig, build_model
from trainer.model.model_config import BASE_7B_SLIM
from trainer.run.loop import train
from trainer.run.memory_plan import SLIM_7B, estimate
from trainer.run.metrics import read_metrics
from trainer.run.step import autocast, train_step
from trainer.run.train_config import TrainConfig

CHUNK, ACTION_DIM, CAMERAS = 8, 14, ("head", "left_wrist")
MIB = 1024**2


def slim_run(root: Path, steps: int, batch_size: int) -> TrainConfig:
    """The bench's (and the test's) slim 7B run on a fresh toy shard set under `root`."""
    shards = write_toy_shards(
        root / "shards", train_episodes=2, steps=16, chunk=CHUNK, action_dim=ACTION_DIM
    )
    return TrainConfig(
        shards=(str(shards),), run_dir=root / "run", base=BASE_7B_SLIM, device="cpu",
        workers=0, decode_threads=0, batch_size=batch_size, max_steps=steps,
        save_every=steps, cameras=CAMERAS,
    )  # fmt: skip


KINDS = ("llm_layer", "dinov2_block", "siglip_block", "rest")


def _owners(model: ActionModel) -> dict[torch.nn.Module, str]:
    """Llama layers and ViT blocks, each with the kind it counts towards."""
    vla = model.vla.base_model.model
    owners = {layer: "llm_layer" for layer in vla.language_model.model.layers}
    owners |= {b: "dinov2_block" for b in vla.vision_backbone.featurizer.blocks}
    owners |= {b: "siglip_block" for b in vla.vision_backbone.fused_featurizer.blocks}
    return owners


def parameter_counts(model: ActionModel) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """Frozen and trainable parameters of the first module of each kind (a block that runs),
    of everything outside the layers ("rest"), and how many modules of each kind there are."""
    owners = _owners(model)
    frozen: dict[str, int] = defaultdict(int)
    trained: dict[str, int] = defaultdict(int)
    owned: set[int] = set()
    firsts: set[str] = set()
    for module, kind in owners.items():
        for p in module.parameters():
            owned.add(id(p))
            if kind not in firsts:
                (trained if p.requires_grad else frozen)[kind] += p.numel()
        firsts.add(kind)
    for p in model.parameters():
        if id(p) not in owned:
            (trained if p.requires_grad else frozen)["rest"] += p.numel()
    modules = {kind: sum(k == kind for k in owners.values()) for kind in KINDS}
    return dict(frozen), dict(trained), modules


def _first_tensor(args: tuple, kwargs: dict) -> torch.Tensor:
    found = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
    return found[0]


def saved_bytes(model: ActionModel, batch) -> dict[str, dict]:
    """What one forward under bf16 autocast leaves for backward, by kind: bytes autograd saves,
    how many modules ran, the bytes of their inputs (what gradient checkpointing keeps
    instead), and the largest saved tensors outside the layers."""
    owners, stack = _owners(model), ["rest"]
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    # Autocast's bf16 copies of the float32 LoRA and head weights are saved too: once per
    # batch, not per sample, so they are counted apart.
    # once per batch, not per sample, so they are counted apart (a matmul may keep one transposed).
    trained = {p.shape for p in model.parameters() if p.requires_grad and p.dim() == 2}
    trained |= {torch.Size(reversed(shape)) for shape in trained}
    seen: set[int] = set()
    saved: dict[str, int] = defaultdict(int)
    inputs: dict[str, int] = defaultdict(int)
    ran: dict[str, int] = defaultdict(int)
    rest: list[tuple[int, tuple, torch.dtype]] = []

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in seen and storage.data_ptr() not in params:
            seen.add(storage.data_ptr())
            if tensor.dtype == torch.bfloat16 and tensor.shape in trained:
                saved["weight_casts"] += storage.nbytes()
                return tensor
            saved[stack[-1]] += storage.nbytes()
            if stack[-1] == "rest":
                rest.append((storage.nbytes(), tuple(tensor.shape), tensor.dtype))
        return tensor

    def enter(module, args, kwargs):
        stack.append(owners[module])
        ran[owners[module]] += 1
        inputs[owners[module]] += _first_tensor(args, kwargs).nbytes

    def leave(module, _args, _output) -> None:  # returns None: the output stays as it was
        stack.pop()

    hooks = [m.register_forward_pre_hook(enter, with_kwargs=True) for m in owners]
    hooks += [m.register_forward_hook(leave) for m in owners]
    try:
        saving = torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t)
        with saving, autocast(batch.pixel_values.device, "bf16"):
            model(batch.pixel_values, batch.input_ids, batch.attention_mask, batch.proprio)
    finally:
        for hook in hooks:
            hook.remove()
    rest.sort(reverse=True)
    return {"saved": dict(saved), "ran": dict(ran), "inputs": dict(inputs), "rest": rest[:6]}


def synthetic_batch(model: ActionModel, batch_size: int) -> DeviceBatch:
    ids = model.tokenize(["put the shoe on the mat"] * batch_size)
    device = next(model.parameters()).device
    return DeviceBatch(
        pixel_values=torch.randn(batch_size, 6 * len(CAMERAS), 224, 224, device=device),
        input_ids=ids["input_ids"].to(device),
        attention_mask=ids["attention_mask"].to(device),
        actions=torch.rand(batch_size, CHUNK, ACTION_DIM, device=device) * 2 - 1,
        valid_rows=torch.ones(batch_size, CHUNK, dtype=torch.bool, device=device),
        sets=torch.zeros(batch_size, dtype=torch.int64, device=device),
        keys=[f"synthetic_{i}" for i in range(batch_size)],
    )


def slim_model(device: str, grad_checkpointing: bool = False) -> ActionModel:
    """The GPU recipe's dtypes: bf16 base (under bf16 autocast), float32 LoRA and head."""
    config = ModelConfig(
        base=BASE_7B_SLIM, action_dim=ACTION_DIM, chunk=CHUNK, dtype="bfloat16",
        grad_checkpointing=grad_checkpointing,
    )  # fmt: skip
    return build_model(config, device)


def report_peaks(device: str, batches: tuple[int, ...]) -> None:
    """CUDA only: the allocator's peak over one whole training step (forward, L1, backward,
    AdamW) of the slim 7B beside the memory plan's estimate for the slim depth."""
    for grad_checkpointing in (False, True):
        model = slim_model(device, grad_checkpointing)
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=1e-5)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
        for size in batches:
            batch = synthetic_batch(model, size)
            step = (model, iter([batch]), 1, optimizer, scheduler, torch.device(device))
            train_step(*step)  # AdamW's moments exist from here on, as in a run
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            train_step(model, iter([batch]), 1, optimizer, scheduler, torch.device(device))
            peak = torch.cuda.max_memory_allocated()
            plan = estimate(size, grad_checkpointing, depth=SLIM_7B).total
            print(
                f"peak allocated, batch {size}, checkpointing {grad_checkpointing}: "
                f"{peak / MIB:.0f} MiB; plan {plan / MIB:.0f} MiB; "
                f"not in the plan {(peak - plan) / MIB:.0f} MiB"
            )
        del model, optimizer
        torch.cuda.empty_cache()


def report_activations(model: ActionModel, batches: tuple[int, ...]) -> None:
    frozen, trained, modules = parameter_counts(model)
    for kind in KINDS:
        print(
            f"parameters of one {kind}: frozen {frozen.get(kind, 0):,}, "
            f"trainable {trained.get(kind, 0):,} ({modules.get(kind, 0) or 1} of them)"
        )
    for size in batches:
        batch = synthetic_batch(model, size)
        tokens = batch.input_ids.shape[1] + len(CAMERAS) * 256
        got = saved_bytes(model, batch)
        per = {k: max(got["ran"].get(k, 1), 1) * size for k in KINDS}
        saved = ", ".join(f"{k} {got['saved'].get(k, 0) / per[k] / MIB:.2f}" for k in KINDS)
        kept = ", ".join(f"{k} {got['inputs'].get(k, 0) / per[k] / MIB:.2f}" for k in KINDS[:3])
        print(f"batch {size}, {tokens} tokens, MiB per sample and module:")
        print(f"  saved for backward: {saved}")
        print(f"  module input (what checkpointing keeps): {kept}")
        casts = got["saved"].get("weight_casts", 0) / MIB
        print(f"  bf16 copies of trainable weights (once per batch): {casts:.2f} MiB")
        for nbytes, shape, dtype in got["rest"]:
            print(f"  rest, largest: {nbytes / size / MIB:.2f} MiB per sample {shape} {dtype}")


@click.command()
@click.option("--steps", default=3, show_default=True, help="Training steps (one saved); 0: none.")
@click.option("--batch-size", default=1, show_default=True)
@click.option(
    "--activation-batches", default="1", show_default=True,
    help="Comma-separated batch sizes whose saved tensors are counted; empty: none.",
)  # fmt: skip
@click.option("--device", default="cpu", show_default=True, help="For the activation counts.")
@click.option(
    "--peak-batches", default="", help="CUDA: comma-separated batches whose peak is measured."
)
def main(
    steps: int, batch_size: int, activation_batches: str, device: str, peak_batches: str
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        if steps:
            train_figures(Path(tmp), steps, batch_size)
    sizes = tuple(int(b) for b in activation_batches.split(",") if b)
    if sizes:
        report_activations(slim_model(device), sizes)
    if peak_batches:
        report_peaks(device, tuple(int(b) for b in peak_batches.split(",")))
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        print(f"{props.name}: total_memory {props.total_memory:,} bytes")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"peak RSS: {peak / 1024**3:.2f} GiB")


def train_figures(root: Path, steps: int, batch_size: int) -> None:
    """vla-train's own loop on the slim 7B (float32 on the CPU: bf16 matmuls without AVX-512
    BF16 are several times slower): wall time, median step, checkpoint files, peak RSS."""
    cfg = slim_run(root, steps, batch_size)
    start = time.perf_counter()
    train(cfg)
    wall = time.perf_counter() - start
    rates = [r["samples_per_s"] for r in read_metrics(cfg.run_dir) if r["split"] == "train"]
    step_s = batch_size / statistics.median(rates[1:] or rates)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"slim 7B, CPU {torch.get_num_threads()} threads, batch {batch_size}, float32:")
    print(f"  peak RSS after training: {rss / 1024**3:.2f} GiB")
    print(f"  {steps} steps + build + save: {wall:.0f} s; median step {step_s:.1f} s")
    for path in sorted((cfg.run_dir / f"step-{steps}").iterdir()):
        print(f"  {path.name}: {path.stat().st_size / MIB:.1f} MiB")


if __name__ == "__main__":
    main()
