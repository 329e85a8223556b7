"""bf16 products on float32 units: rounded once, where bf16 hardware rounds, and only used on
CPUs without bf16 instructions under --precision bf16."""

from __future__ import annotations

from contextlib import nullcontext

import pytest
import torch
from torch import nn

import trainer.run.bf16_units as units
from trainer.run.bf16_units import Bf16OnFloat32Units, bf16_products
from trainer.run.step import autocast


def _bf16(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).bfloat16()


def _conv_grads(x, w, b):
    x, w, b = (t.detach().requires_grad_() for t in (x, w, b))
    out = nn.functional.conv2d(x, w, b, stride=14)
    out.backward(_bf16(*out.shape, seed=9))
    return out, x.grad, w.grad, b.grad


def _cases():
    a, b, bias = _bf16(64, 300, seed=1), _bf16(300, 96, seed=2), _bf16(96, seed=3)
    a3, b3, c3 = _bf16(4, 64, 300, seed=4), _bf16(4, 300, 50, seed=5), _bf16(4, 64, 50, seed=6)
    x, w, cb = _bf16(2, 3, 56, 56, seed=7), _bf16(32, 3, 14, 14, seed=8), _bf16(32, seed=10)
    return {
        "mm": (torch.mm, (a, b)),
        "addmm": (torch.addmm, (bias, a, b)),
        "bmm": (torch.bmm, (a3, b3)),
        "baddbmm": (torch.baddbmm, (c3, a3, b3)),
        "conv2d and its backward": (_conv_grads, (x, w, cb)),
    }


@pytest.mark.parametrize("name", list(_cases()))
def test_a_product_is_float32_arithmetic_rounded_once_to_bf16(name):
    func, args = _cases()[name]
    with Bf16OnFloat32Units():
        got = func(*args)
    wide = func(*(t.float() for t in args))
    got, wide = (v if isinstance(v, tuple) else (v,) for v in (got, wide))
    for ours, exact in zip(got, wide, strict=True):
        assert ours.dtype == torch.bfloat16
        # Bit for bit the float32 result rounded to bf16 (PyTorch's own bf16 kernels are not
        # always: their convolution weight gradient differs in a quarter of its values).
        assert torch.equal(ours, exact.bfloat16()), name


def test_products_come_within_one_bf16_step_of_the_exact_result():
    a, b = _bf16(64, 300, seed=1), _bf16(300, 96, seed=2)
    with Bf16OnFloat32Units():
        ours = torch.mm(a, b).double()
    exact = a.double() @ b.double()
    step = exact.abs().clamp_min(1e-30).log2().floor().exp2() * 2.0**-7  # bf16's ulp there
    assert ((ours - exact).abs() <= step).all()


def test_a_bf16_step_gives_the_gradients_of_pytorchs_own_bf16_kernels(monkeypatch):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 4, stride=4), nn.Flatten(), nn.Linear(8 * 16, 5))
    x = torch.randn(6, 3, 16, 16)

    def grads(context):
        net.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16), context:
            loss = net(x).float().abs().mean()
        with context:
            loss.backward()
        return loss.item(), [p.grad.clone() for p in net.parameters()]

    own_loss, own = grads(nullcontext())
    our_loss, ours = grads(Bf16OnFloat32Units())
    assert our_loss == pytest.approx(own_loss, rel=1e-2)
    for mine, theirs in zip(ours, own, strict=True):
        assert mine.dtype == torch.float32  # the master weights' gradients stay float32
        torch.testing.assert_close(mine, theirs, rtol=5e-2, atol=1e-3)


def test_the_float32_units_are_used_only_for_bf16_on_cpus_without_bf16(monkeypatch):
    cpu = torch.device("cpu")
    assert isinstance(bf16_products(cpu, "fp32"), nullcontext)
    assert isinstance(bf16_products(torch.device("cuda"), "bf16"), nullcontext)
    monkeypatch.setattr(units, "cpu_has_bf16_units", lambda: False)
    assert isinstance(bf16_products(cpu, "bf16"), Bf16OnFloat32Units)
    monkeypatch.setattr(units, "cpu_has_bf16_units", lambda: True)
    assert isinstance(bf16_products(cpu, "bf16"), nullcontext)


def test_the_trainers_bf16_forward_runs_its_products_on_float32_units(monkeypatch):
    monkeypatch.setattr(units, "cpu_has_bf16_units", lambda: False)
    seen: list[torch.dtype] = []
    products = {torch.ops.aten.mm.default, torch.ops.aten.addmm.default}

    class Watch(torch.utils._python_dispatch.TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func in products:
                seen.extend(a.dtype for a in args if isinstance(a, torch.Tensor))
            return func(*args, **(kwargs or {}))

    layer = nn.Linear(300, 7)
    # Entered first, Watch is dispatched to last: it sees the products as the kernels get them.
    with Watch(), autocast(torch.device("cpu"), "bf16"):
        out = layer(torch.randn(4, 2, 300))
    assert out.dtype == torch.bfloat16
    assert seen and set(seen) == {torch.float32}
