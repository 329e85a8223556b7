"""OpenVLA-OFT action normalization to [-1, 1] and back.

Written with operators and `.clip` only, so the same functions serve numpy arrays on
the CPU and torch tensors on the GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stats.compute import ArrayStats

NORMALIZATIONS = ("bounds_q99", "bounds")
_EPS = 1e-8


@dataclass(frozen=True)
class Bounds:
    """low/high per dimension, the mask of normalized dims, and the constant dims (min == max).

    `constant` follows OFT (min == max, whatever the bounds): with `bounds_q99` a dimension
    whose q01 == q99 but whose max is higher still normalizes, to -1 at q01 and +1 above it,
    as OFT's does, so a policy trained here sees the targets an OFT run would.
    """

    low: np.ndarray
    high: np.ndarray
    mask: np.ndarray
    constant: np.ndarray


def bounds(stats: ArrayStats, normalization: str) -> Bounds:
    """`bounds_q99` uses q01/q99 (LIBERO); `bounds` min/max (ALOHA's absolute joints)."""
    if normalization == "bounds_q99":
        low, high = stats.q01, stats.q99
    elif normalization == "bounds":
        low, high = stats.min, stats.max
    else:
        raise ValueError(f"unknown normalization {normalization!r}; use one of {NORMALIZATIONS}")
    low = np.asarray(low, dtype=np.float32)
    high = np.asarray(high, dtype=np.float32)
    constant = np.asarray(stats.min) == np.asarray(stats.max)
    return Bounds(low, high, np.asarray(stats.mask, bool), constant)


def normalize(x, b: Bounds):
    """clip(2(x - low)/(high - low + eps) - 1, -1, 1) where mask; x elsewhere; 0 where the
    dimension is constant and masked.

    One departure from OFT, on purpose: a constant dimension whose mask is off keeps its
    value here, where OFT makes it 0. OFT's denormalization passes unmasked dims through,
    so its robot would be sent 0 instead of the constant; ours is sent the constant.

    `b` holds numpy arrays, or tensors on x's device (the trainer's per-set bounds).
    """
    y = (2 * (x - b.low) / (b.high - b.low + _EPS) - 1).clip(-1, 1)
    y = y * ~b.constant
    return y * b.mask + x * ~b.mask


def denormalize(y, b: Bounds):
    """0.5 (y + 1)(high - low + eps) + low where mask; y elsewhere."""
    x = 0.5 * (y + 1) * (b.high - b.low + _EPS) + b.low
    return x * b.mask + y * ~b.mask
