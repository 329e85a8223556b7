"""Where a run decodes its JPEGs (--decode): in the loader on the CPU, or on the training GPU.

`auto` starts on the CPU and, on a GPU whose torchvision can decode JPEGs, measures: after a
warm-up window it moves the decode to the GPU only when the steps waited on the loader for
more than WAIT_SHARE_LIMIT of their time. The rule is a pure function of those figures.
"""

from __future__ import annotations

from dataclasses import dataclass

AUTO, CPU, DEVICE = "auto", "cpu", "device"
DECODES = (AUTO, CPU, DEVICE)
SKIP_STEPS = 5  # first steps of a window left out: workers starting, caches filling
WINDOW_STEPS = 20  # steps measured after those before `auto` decides
# A data wait above this share of step time is the GPU idling for the CPU's JPEGs: 5% is far
# above what a loader that keeps up leaves (the GPU check's goal is 1%), so noise never
# moves the decode, and moving it is worth it.
WAIT_SHARE_LIMIT = 0.05


@dataclass(frozen=True)
class DecodeChoice:
    """Where JPEGs are decoded ("cpu" or "device"; "auto" while the window runs), and why."""

    where: str
    reason: str

    def line(self) -> str:
        where = {CPU: "on the CPU, in the loader", DEVICE: "on the GPU (nvJPEG)"}
        return f"JPEGs decoded {where.get(self.where, 'on the CPU for now')} ({self.reason})"


def start_decode(asked: str, device_problem: str | None) -> DecodeChoice:
    """Before the first step: --decode as given, or what `auto` knows without measuring.

    `device_problem` says why the GPU can't decode (None when it can); asking for the
    device anyway is the caller's error to report.
    """
    if asked != AUTO:
        return DecodeChoice(asked, "as given")
    if device_problem is not None:
        return DecodeChoice(CPU, f"auto: {device_problem}")
    return DecodeChoice(
        AUTO,
        f"auto: moved to the GPU after {SKIP_STEPS + WINDOW_STEPS} steps if the last "
        f"{WINDOW_STEPS} of them waited on the loader over {WAIT_SHARE_LIMIT:.0%} of their time",
    )


def choose_decode(wait_s: float, step_s: float, limit: float = WAIT_SHARE_LIMIT) -> DecodeChoice:
    """`auto`'s decision after its window: `wait_s` of the window's `step_s` spent waiting for
    CPU-decoded batches (summed over the window's steps, averaged over ranks)."""
    if step_s <= 0 or wait_s < 0:
        raise ValueError(f"a window of {step_s} s with {wait_s} s of waiting")
    share = wait_s / step_s
    if share > limit:
        return DecodeChoice(
            DEVICE, f"auto: the steps waited on the CPU's decode {share:.1%} of their time, "
            f"over {limit:.0%}"
        )  # fmt: skip
    return DecodeChoice(
        CPU, f"auto: the steps waited on the loader {share:.1%} of their time, within {limit:.0%}"
    )


def window_steps(first_step: int, step: int) -> bool:
    """Whether `step` (1-based) is measured by a window that starts after `first_step`."""
    return first_step + SKIP_STEPS < step <= first_step + SKIP_STEPS + WINDOW_STEPS
