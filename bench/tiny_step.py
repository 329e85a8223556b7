"""The tiny base's training speed on CPU: today's tiny beside the 2-layer one it replaced.

Learning checks in CI train the tiny base for hundreds of steps, so its speed per sample is
what keeps them cheap. Both variants run the trainer's own train_step on the same synthetic
batch (two 224 px cameras, an 8 x 14 chunk), in alternating rounds so that machine noise hits
both alike; the script prints the median samples/s of each and their ratio.
"""

from __future__ import annotations

import statistics
import time

import click
import torch

from trainer.data.batches import DeviceBatch
from trainer.model import ActionModel, ModelConfig, build_model
from trainer.model.bases import random_base
from trainer.model.head import L1RegressionHead
from trainer.model.lora import add_lora
from trainer.model.model_config import (
    DINOV2_TIMM_ID,
    SIGLIP_TIMM_ID,
    TINY_TOWER_OVERRIDES,
    tiny_spec,
)
from trainer.model.tokenizer import tiny_tokenizer
from trainer.run.step import build_optimizer, build_scheduler, train_step

CHUNK, ACTION_DIM, CAMERAS = 8, 14, 2
# The tiny base before it could learn from images: 2 Llama layers at HF's 0.02 init, towers
# with 14 px patches (256 per image, as the 7B) and timm's faint position embeddings.
OLD_TINY_TEXT = {"num_hidden_layers": 2, "initializer_range": 0.02}
OLD_TINY_TOWERS = {
    "vla-shards/tiny-dinov2-patch14": (
        DINOV2_TIMM_ID,
        {"embed_dim": 32, "depth": 3, "num_heads": 2, "patch_size": 14},
    ),
    "vla-shards/tiny-siglip-patch14": (
        SIGLIP_TIMM_ID,
        {"embed_dim": 48, "depth": 3, "num_heads": 2, "patch_size": 14},
    ),
}


def old_tiny(config: ModelConfig) -> ActionModel:
    tokenizer = tiny_tokenizer()
    spec = tiny_spec(tokenizer.pad_token_id)
    spec["text_config"].update(OLD_TINY_TEXT)
    TINY_TOWER_OVERRIDES.update(OLD_TINY_TOWERS)  # new names only: today's tiny is untouched
    spec["timm_model_ids"] = list(OLD_TINY_TOWERS)
    cpu = torch.device("cpu")
    base = random_base(spec, cpu, torch.float32, cpu)
    head = L1RegressionHead(config.action_dim, base.hidden_size)
    return ActionModel(config, add_lora(base, config.lora_rank), head, tokenizer)


def synthetic_batch(policy: ActionModel, batch_size: int) -> DeviceBatch:
    generator = torch.Generator().manual_seed(0)
    ids = policy.tokenize(["put the shoe on the mat"] * batch_size)
    return DeviceBatch(
        pixel_values=torch.randn(batch_size, 6 * CAMERAS, 224, 224, generator=generator),
        input_ids=ids["input_ids"],
        attention_mask=ids["attention_mask"],
        actions=torch.rand(batch_size, CHUNK, ACTION_DIM, generator=generator) * 2 - 1,
        valid_rows=torch.ones(batch_size, CHUNK, dtype=torch.bool),
        sets=torch.zeros(batch_size, dtype=torch.int64),
        keys=[f"synthetic_{i}" for i in range(batch_size)],
    )


def samples_per_s(
    policy: ActionModel, batch: DeviceBatch, steps: int, precision: str = "fp32"
) -> float:
    optimizer = build_optimizer(policy, lr=5e-4)
    scheduler = build_scheduler(optimizer, warmup_steps=0, decay_step=10**9)
    cpu = torch.device("cpu")

    def step() -> None:
        train_step(policy, iter([batch]), 1, optimizer, scheduler, cpu, precision)

    step()  # first-call costs
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch.size / (time.perf_counter() - start)


@click.command()
@click.option(
    "--rounds", default=5, type=click.IntRange(min=1), show_default=True, help="Alternating rounds."
)
@click.option(
    "--steps",
    default=10,
    type=click.IntRange(min=1),
    show_default=True,
    help="Timed steps per variant per round.",
)
@click.option("--batch-size", default=8, type=click.IntRange(min=1), show_default=True)
def main(rounds: int, steps: int, batch_size: int) -> None:
    torch.manual_seed(0)
    config = ModelConfig(base="tiny", action_dim=ACTION_DIM, chunk=CHUNK, num_images=CAMERAS)
    variants = {
        "tiny": build_model(config),
        "tiny before (2 layers)": old_tiny(config),
    }
    batch = synthetic_batch(variants["tiny"], batch_size)
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, policy in variants.items():
            rates[name].append(samples_per_s(policy, batch, steps))
    print(f"CPU, {torch.get_num_threads()} threads, batch {batch_size}, {rounds} rounds")
    for name, values in rates.items():
        counts = variants[name].trainable_parameters()
        print(
            f"{name}: median {statistics.median(values):.1f} samples/s "
            f"(rounds {', '.join(f'{v:.1f}' for v in values)}), {counts['total']:,} trainable"
        )
    new, old = (statistics.median(v) for v in rates.values())
    print(f"ratio tiny / tiny before: {new / old:.2f}x")


if __name__ == "__main__":
    main()
