"""What every part of the GPU check is given and records into: the run's sizes, its context,
the recorder, and the reference loop's figures the parts compare against."""

from __future__ import annotations

import json
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

BASE_7B = "openvla-7b-random"
CAMERAS = ("head", "left_wrist")  # vla-train's default --cameras: two images per sample
# The reference loop's figures, batch 8, two images, LoRA r=32, one H100; and the goals.
ANCHORS = {
    "step_s": 0.698,
    "samples_per_s": 11.5,
    "peak_gib": 60.0,
    "goal_step_s": 0.68,
    "moonshot_step_s": 0.52,
    "data_wait_goal": 0.01,
}


@dataclass(frozen=True)
class Sizes:
    """How big each part runs: the 7B shapes on a GPU, or tiny ones for the CPU smoke run."""

    base: str
    batch: int
    big_batch: int  # run with gradient checkpointing
    warmup: int
    steps: int  # timed steps at `batch`
    big_steps: int
    profile_steps: int
    loop_episodes: int  # generated episodes the vla-train part streams
    loop_episode_steps: int
    loop_shard_samples: int
    loop_steps: int
    loop_skip: int  # first vla-train steps left out of the data-wait share: workers starting
    learn_steps: int  # tiny base on the learnable set (the CPU learning test runs 400)
    long_steps: int  # `base` on the learnable set, with loss and gradient norm
    reserve_s: float  # kept back from a timing loop for the probes that follow it


GPU = Sizes(
    base=BASE_7B, batch=8, big_batch=16, warmup=3, steps=25, big_steps=8, profile_steps=1,
    loop_episodes=24, loop_episode_steps=100, loop_shard_samples=100, loop_steps=60,
    loop_skip=10, learn_steps=400, long_steps=50, reserve_s=45.0,
)  # fmt: skip
SMOKE = Sizes(
    base="tiny", batch=2, big_batch=4, warmup=1, steps=3, big_steps=2, profile_steps=1,
    loop_episodes=3, loop_episode_steps=12, loop_shard_samples=4, loop_steps=6, loop_skip=2,
    learn_steps=6, long_steps=4, reserve_s=0.0,
)  # fmt: skip


@dataclass(frozen=True)
class Context:
    """What every part is given."""

    device: torch.device
    sizes: Sizes
    work: Path  # scratch: shard sets, runs
    out: Path  # what comes back: the trace goes here
    deadline: float  # time.monotonic() at which the part is stopped
    trace: str  # "auto" (when the 7B step is slower than the anchor), "always", "never"


class Recorder:
    """A part's results, rewritten to its JSON file after every change, so a kill keeps them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {}
        self.lock = threading.Lock()  # a part may record from a watching thread too

    def set(self, **values: Any) -> None:
        with self.lock:
            self.data.update(values)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.data, indent=1, default=plain))
            tmp.replace(self.path)

    def fail(self, exc: BaseException) -> None:
        lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
        self.set(error=f"{type(exc).__name__}: {exc}", traceback="".join(lines)[-4000:])


def plain(value: Any) -> Any:
    """JSON for what json cannot write: numpy and 0-d torch scalars by value, else the text."""
    item = getattr(value, "item", None)
    return item() if callable(item) else str(value)
