"""bf16 matrix products on CPUs without bf16 arithmetic, rounded where bf16 hardware rounds.

OFT trains in bf16 autocast: a matrix product takes bf16 operands, accumulates in float32
(as GPU tensor cores do) and gives a bf16 result. On a CPU without bf16 instructions (no
AVX512-BF16 or AMX) PyTorch falls back to generic loops for bf16 products and convolutions,
about 20x slower than its float32 kernels, which makes `--precision bf16` on such a CPU
several times slower than fp32.

The same rounding costs little with float32 kernels: a bf16 number is exactly a float32,
and so is the product of two of them (8 + 8 significant bits fit in float32's 24), so
widening the operands, multiplying and accumulating in float32 and rounding the result to
bf16 once rounds exactly where bf16 hardware does; only the order of the float32 sums can
differ, as it does between any two GPU kernels. The rest of the step (elementwise work,
attention, the optimizer) keeps PyTorch's own bf16 code.
"""

from __future__ import annotations

from contextlib import nullcontext
from functools import cache

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten

# Products whose bf16 CPU kernels are the slow ones; backward passes reach them too (the
# gradient of a product is a product), and convolution has its own backward op.
_PRODUCTS = {
    aten.mm.default,
    aten.addmm.default,
    aten.bmm.default,
    aten.baddbmm.default,
    aten.convolution.default,
    aten.convolution_backward.default,
}


def _widen(value):
    if isinstance(value, torch.Tensor) and value.dtype == torch.bfloat16:
        return value.float()
    return value


def _round(value):
    if isinstance(value, torch.Tensor):
        return value.to(torch.bfloat16)
    if isinstance(value, tuple):
        return tuple(_round(v) for v in value)
    return value


class Bf16OnFloat32Units(TorchDispatchMode):
    """Runs bf16 matrix products and convolutions through float32 kernels (see the module)."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func not in _PRODUCTS or not any(
            isinstance(a, torch.Tensor) and a.dtype == torch.bfloat16 for a in args
        ):
            return func(*args, **kwargs)
        wide = func(*[_widen(a) for a in args], **{k: _widen(v) for k, v in kwargs.items()})
        return _round(wide)


@cache
def cpu_has_bf16_units() -> bool:
    """True where PyTorch's own bf16 CPU kernels run on bf16 instructions (oneDNN's check);
    False also where this PyTorch was built without oneDNN and so has no such kernels."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def bf16_products(device: torch.device, precision: str):
    """The context a bf16 step runs in on this device: the float32-unit products on a CPU
    without bf16 instructions, nothing elsewhere."""
    if device.type == "cpu" and precision == "bf16" and not cpu_has_bf16_units():
        return Bf16OnFloat32Units()
    return nullcontext()
