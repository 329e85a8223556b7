"""A bf16 training step of the tiny base on a CPU without bf16 instructions: its products on
float32 kernels (trainer/run/bf16_units.py) beside PyTorch's own bf16 kernels, float32 for
reference.

`--precision bf16` on such a CPU is what the bf16 learning check runs, so this is most of
that test's time. The three variants run the trainer's own train_step on the same synthetic
batch in alternating rounds (machine noise hits all alike); the script prints each median
samples/s and the ratio of the two bf16 ways. On a CPU with bf16 instructions both bf16
variants are PyTorch's own kernels, and the script says so.
"""

from __future__ import annotations

import statistics
from unittest import mock

import click
import torch

import trainer.run.bf16_units as units
from bench.tiny_step import ACTION_DIM, CAMERAS, CHUNK, samples_per_s, synthetic_batch
from trainer.model import ModelConfig, build_model

VARIANTS = {
    "bf16, float32 units (vla-train)": ("bf16", False),
    "bf16, PyTorch's bf16 kernels": ("bf16", True),
    "fp32": ("fp32", False),
}


@click.command()
@click.option(
    "--rounds", default=5, type=click.IntRange(min=1), show_default=True, help="Alternating rounds."
)
@click.option(
    "--steps",
    default=4,
    type=click.IntRange(min=1),
    show_default=True,
    help="Timed steps per variant per round.",
)
@click.option("--batch-size", default=8, type=click.IntRange(min=1), show_default=True)
def main(rounds: int, steps: int, batch_size: int) -> None:
    if units.cpu_has_bf16_units():
        print("this CPU has bf16 instructions: vla-train uses PyTorch's own bf16 kernels here")
    torch.manual_seed(0)
    config = ModelConfig(base="tiny", action_dim=ACTION_DIM, chunk=CHUNK, num_images=CAMERAS)
    policy = build_model(config)
    batch = synthetic_batch(policy, batch_size)
    rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(rounds):
        for name, (precision, native) in VARIANTS.items():
            has_units = mock.patch.object(units, "cpu_has_bf16_units", lambda n=native: n)
            with has_units:
                rates[name].append(samples_per_s(policy, batch, steps, precision))
    print(
        f"CPU ({torch.backends.cpu.get_cpu_capability()}), {torch.get_num_threads()} threads, "
        f"batch {batch_size}, {rounds} rounds of {steps} steps"
    )
    for name, values in rates.items():
        rounds_text = ", ".join(f"{v:.1f}" for v in values)
        print(f"{name}: median {statistics.median(values):.2f} samples/s (rounds {rounds_text})")
    ours, theirs, _ = (statistics.median(v) for v in rates.values())
    print(f"bf16 step, float32 units / PyTorch's bf16 kernels: {ours / theirs:.2f}x samples/s")


if __name__ == "__main__":
    main()
