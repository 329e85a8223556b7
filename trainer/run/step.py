"""One optimizer step (forward, L1 over valid rows, backward, update) and the validation pass."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from trainer.data.batches import DeviceBatch
from trainer.run.bf16_units import bf16_products

WEIGHT_DECAY = 0.01  # PyTorch's AdamW default, which OFT keeps
DECAY_FACTOR = 0.1
WARMUP_START = 0.1  # OFT's linear warmup goes from 10% to 100% of the learning rate


def build_optimizer(model: nn.Module, lr: float, fused: bool = False) -> torch.optim.AdamW:
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=lr, weight_decay=WEIGHT_DECAY, fused=fused or None)


def build_scheduler(
    optimizer: torch.optim.Optimizer, warmup_steps: int, decay_step: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """One factor: linear warmup (OFT's: 10% -> 100%, the first step already at
    0.1 + 0.9 / warmup_steps) times the x0.1 step decay, so warmup can't undo the decay."""

    def factor(step: int) -> float:
        warm = 1.0
        if step + 1 < warmup_steps:
            warm = WARMUP_START + (1 - WARMUP_START) * (step + 1) / warmup_steps
        return warm * (DECAY_FACTOR if step >= decay_step else 1.0)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def l1_sums(pred: torch.Tensor, target: torch.Tensor, valid_rows: torch.Tensor) -> torch.Tensor:
    """[sum, count] of |error| for all valid rows, row 0, and rows 1.. (6 values).

    Sums rather than means, so micro-batches, ranks and validation batches add up exactly.
    """
    err = (pred.float() - target).abs()
    weight = valid_rows[..., None].to(err.dtype).expand_as(err)
    masked = err * weight
    return torch.stack(
        [
            masked.sum(),
            weight.sum(),
            masked[:, 0].sum(),
            weight[:, 0].sum(),
            masked[:, 1:].sum(),
            weight[:, 1:].sum(),
        ]
    )


def l1_metrics(sums: torch.Tensor) -> dict[str, float]:
    s = sums.tolist()
    ratio = [s[i] / s[i + 1] if s[i + 1] else 0.0 for i in (0, 2, 4)]
    return {"loss": ratio[0], "curr_l1": ratio[1], "future_l1": ratio[2]}


@contextmanager
def autocast(device: torch.device, precision: str = "fp32"):
    """bf16 autocast on CUDA (OFT's precision), and on the CPU for --precision bf16 (its
    products on float32 units where the CPU has no bf16 ones: trainer/run/bf16_units.py);
    else exact fp32 on the CPU."""
    if device.type == "cuda" or precision == "bf16":
        with torch.autocast(device.type, dtype=torch.bfloat16), bf16_products(device, precision):
            yield
    else:
        yield


def loss_targets(actions: torch.Tensor, precision: str) -> torch.Tensor:
    """The targets the L1 compares with: OFT casts them to bf16 (--precision bf16); the
    difference itself is taken in float32."""
    return actions.to(torch.bfloat16).float() if precision == "bf16" else actions


def train_step(
    model: nn.Module,
    micro_batches: Iterator[DeviceBatch],
    grad_accum: int,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    device: torch.device,
    precision: str = "fp32",
) -> torch.Tensor:
    """Consume `grad_accum` micro-batches, update once; returns this rank's l1_sums."""
    optimizer.zero_grad(set_to_none=True)
    totals = torch.zeros(6, device=device)
    for i in range(grad_accum):
        batch = next(micro_batches)
        # DDP all-reduces gradients in backward; only the last micro-batch needs it.
        last = i == grad_accum - 1
        sync = model.no_sync() if isinstance(model, DistributedDataParallel) and not last else None
        with sync or nullcontext():
            with autocast(device, precision):
                pred = model(
                    batch.pixel_values, batch.input_ids, batch.attention_mask, batch.proprio
                )
            sums = l1_sums(pred, loss_targets(batch.actions, precision), batch.valid_rows)
            with bf16_products(device, precision):  # the backward's products are bf16 too
                (sums[0] / sums[1] / grad_accum).backward()
        totals += sums.detach()
    optimizer.step()
    scheduler.step()
    return totals


@torch.no_grad()
def eval_sums(
    policy: nn.Module,
    batches: Iterable[DeviceBatch],
    device: torch.device,
    num_sets: int,
    precision: str = "fp32",
) -> torch.Tensor:
    """l1_sums per shard set, (num_sets, 6), over a whole (finite) stream of batches."""
    was_training = policy.training
    policy.eval()
    totals = torch.zeros(num_sets, 6, device=device)
    for batch in batches:
        with autocast(device, precision):
            pred = policy(batch.pixel_values, batch.input_ids, batch.attention_mask, batch.proprio)
        targets = loss_targets(batch.actions, precision)
        for i in batch.sets.unique().tolist():
            pick = batch.sets == i
            totals[i] += l1_sums(pred[pick], targets[pick], batch.valid_rows[pick])
    policy.train(was_training)
    return totals
