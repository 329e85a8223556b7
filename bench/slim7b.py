"""The slim 7B (openvla-7b's widths, 2 Llama layers) on CPU: peak RSS, step time, checkpoint
sizes, and the activation bytes per layer that trainer/run/memory_plan.py extrapolates.

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
from trainer.run.metrics import read_metrics
from trainer.run.step import autocast
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


def _owners(model: ActionModel) -> dict[torch.nn.Module, str]:
    """Llama layers and ViT blocks, each with the kind it counts towards."""
    vla = model.vla.base_model.model
    owners = {layer: "llm_layer" for layer in vla.language_model.model.layers}
    owners |= {b: "dinov2_block" for b in vla.vision_backbone.featurizer.blocks}
    owners |= {b: "siglip_block" for b in vla.vision_backbone.fused_featurizer.blocks}
    return owners


def saved_bytes(model: ActionModel, batch) -> tuple[dict[str, int], dict[str, int]]:
    """Bytes autograd saves in one forward, by kind, and how many modules of each kind ran."""
    owners, stack = _owners(model), ["rest"]
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: set[int] = set()
    totals: dict[str, int] = defaultdict(int)
    ran: dict[str, int] = defaultdict(int)

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in seen and storage.data_ptr() not in params:
            seen.add(storage.data_ptr())
            totals[stack[-1]] += storage.nbytes()
        return tensor

    def enter(module, _args):
        stack.append(owners[module])
        ran[owners[module]] += 1

    def leave(module, _args, _output) -> None:  # returns None: the output stays as it was
        stack.pop()

    hooks = [m.register_forward_pre_hook(enter) for m in owners]
    hooks += [m.register_forward_hook(leave) for m in owners]
    try:
        saving = torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t)
        with saving, autocast(batch.pixel_values.device, model.config.torch_dtype):
            model(batch.pixel_values, batch.input_ids, batch.attention_mask, batch.proprio)
    finally:
        for hook in hooks:
            hook.remove()
    return dict(totals), dict(ran)


def synthetic_batch(model: ActionModel, batch_size: int) -> DeviceBatch:
    ids = model.tokenize(["put the shoe on the mat"] * batch_size)
    return DeviceBatch(
        pixel_values=torch.randn(batch_size, 6 * len(CAMERAS), 224, 224),
        input_ids=ids["input_ids"],
        attention_mask=ids["attention_mask"],
        actions=torch.rand(batch_size, CHUNK, ACTION_DIM) * 2 - 1,
        valid_rows=torch.ones(batch_size, CHUNK, dtype=torch.bool),
        sets=torch.zeros(batch_size, dtype=torch.int64),
        keys=[f"synthetic_{i}" for i in range(batch_size)],
    )


def report_activations(model: ActionModel, batches: tuple[int, ...]) -> None:
    tokens = None
    for size in batches:
        batch = synthetic_batch(model, size)
        tokens = batch.input_ids.shape[1] + 2 * 256
        totals, ran = saved_bytes(model, batch)
        parts = ", ".join(
            f"{kind} {totals.get(kind, 0) / max(ran.get(kind, 1), 1) / size / MIB:.1f}"
            for kind in ("llm_layer", "dinov2_block", "siglip_block", "rest")
        )
        print(f"saved MiB per sample, batch {size} ({tokens} tokens; per module): {parts}")


@click.command()
@click.option("--steps", default=3, show_default=True, help="Training steps (one saved); 0: none.")
@click.option("--batch-size", default=1, show_default=True)
def main(steps: int, batch_size: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        if steps:
            train_figures(Path(tmp), steps, batch_size)
        model = build_model(
            ModelConfig(base=BASE_7B_SLIM, action_dim=ACTION_DIM, chunk=CHUNK, dtype="bfloat16")
        )
        report_activations(model, (1, 2))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"peak RSS: {peak / 1024**3:.2f} GiB")


def train_figures(root: Path, steps: int, batch_size: int) -> None:
    """vla-train's own loop on the slim 7B: wall time, median step, checkpoint files."""
    cfg = slim_run(root, steps, batch_size)
    start = time.perf_counter()
    train(cfg)
    wall = time.perf_counter() - start
    rates = [r["samples_per_s"] for r in read_metrics(cfg.run_dir) if r["split"] == "train"]
    step_s = batch_size / statistics.median(rates[1:] or rates)
    print(f"slim 7B, CPU {torch.get_num_threads()} threads, batch {batch_size}:")
    print(f"  {steps} steps + build + save: {wall:.0f} s; median step {step_s:.1f} s")
    for path in sorted((cfg.run_dir / f"step-{steps}").iterdir()):
        print(f"  {path.name}: {path.stat().st_size / MIB:.1f} MiB")


if __name__ == "__main__":
    main()
