"""Float options checked finite and in range, so `inf` or `nan` never reaches a run."""

from __future__ import annotations

import math

from common.errors import ConfigError


def check_float(
    flag: str,
    value: float,
    *,
    above: float | None = None,
    at_least: float | None = None,
    below: float | None = None,
    at_most: float | None = None,
) -> float:
    """`value` as a float when finite and within the bounds given; else ConfigError naming it."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{flag} must be a number, not {value!r}") from None
    bounds = [
        (above, lambda b: number > b, "above"),
        (at_least, lambda b: number >= b, "at least"),
        (below, lambda b: number < b, "below"),
        (at_most, lambda b: number <= b, "at most"),
    ]
    wanted = [f"{words} {bound:g}" for bound, _, words in bounds if bound is not None]
    within = all(ok(bound) for bound, ok, _ in bounds if bound is not None)
    if not math.isfinite(number) or not within:
        rule = " ".join(["a finite number", " and ".join(wanted)]).strip()
        raise ConfigError(f"{flag} must be {rule}, not {value!r}")
    return number
