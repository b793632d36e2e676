"""The critic's regression gradient in the trainer process, derived from the one NumPy MLP kernel.

For a critic that declares an :class:`~trustpg.nets.policies.MLPSpec` (the default
:class:`trustpg.nets.policies.Critic`), the gradient of L = (1/m) Σ (V(s) − R)² over a minibatch is
:func:`trustpg.accel.np_mlp.mse_gradient`, the same function the critic worker process runs, over
torch's array operations (:data:`TORCH`) on the live parameters and their ``.grad``: the matrix
products are torch's (MKL, ``torch_threads`` threads) because NumPy's OpenBLAS runs multithreaded in
this process (2.8–7.5 ms instead of ~0.13 ms per minibatch gradient next to the env stepping); the
element-wise formulas are the kernel's NumPy ones on the tensors' memory (NumPy's vectorised tanh
is also ~8× faster than PyTorch's on one thread for [128, 64] blocks).

tests/unit/test_mlp_value.py compares it with autograd, and with the kernel over NumPy, in float64.
It runs where the critic is fitted in this process: on a thread (``critic_process=false``), in
sequence (``critic_overlap=false``) and when the critic worker fails. End to end it saves 6 % of a
Hopper-v5 run with the critic on a thread against autograd (docs/performance.md, "The in-process
critic gradient, derived from the kernel").
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from trustpg.accel import np_mlp
from trustpg.nets.policies import MLPSpec


def unsupported(spec: MLPSpec) -> str:
    """Why :class:`MSEGradient` cannot run ``spec`` ("" if it can): a value head on the CPU
    (NumPy views of the parameters)."""
    if spec.head != "value":
        return f"a {spec.head!r} head is not a value"
    if any(p.device.type != "cpu" for p in spec.parameters()):
        return "the critic's parameters are not on the CPU"
    return ""


class MSEGradient:
    """Writes ∂L/∂φ of L = mean((V(x) − y)²) into the critic parameters' ``.grad``, for a critic
    that declares an :class:`MLPSpec` (``critic.mlp_spec()``).

    The ``.grad`` tensors are created once and overwritten in place by every call, so an optimizer
    that reads ``p.grad`` (as :class:`trustpg.core.optim.Adam`) can step right after. Not thread-safe:
    one instance per thread."""

    def __init__(self, spec: MLPSpec) -> None:
        if why := unsupported(spec):
            raise ValueError(f"MSEGradient cannot run this critic: {why}")
        self.linear = list(spec.linears)
        self.activation, self.alpha = spec.activation, spec.alpha
        for p in spec.parameters():
            if p.grad is None or p.grad.shape != p.shape or p.grad.dtype != p.dtype:
                p.grad = torch.zeros_like(p)

    @torch.no_grad()
    def __call__(self, x: Tensor, y: Tensor) -> None:
        """x: states ``[m, D]``; y: targets ``[m]``."""
        layers = [(m.weight.t(), m.bias) for m in self.linear]
        grads = [(m.weight.grad, m.bias.grad) for m in self.linear]
        np_mlp.mse_gradient(layers, self.activation, x, y, grads, self.alpha, TORCH)


def _matmul(a: Tensor, b: Tensor, out: Tensor | None = None) -> Tensor:
    if out is None:
        return torch.mm(a, b)
    if out.shape[0] > out.shape[1]:
        # MKL is several times slower when the result's last dimension is the small one (the
        # first layer's dW [64, D]), so form the wider orientation there.
        return out.copy_(torch.mm(b.t(), a.t()).t())
    return torch.mm(a, b, out=out)


def _elementwise(f: Callable[[str, np.ndarray, float], np.ndarray]) -> Callable[[str, Tensor, float], Tensor]:
    """The kernel's NumPy formula ``f`` on a CPU tensor's memory (in place where ``f`` is)."""
    return lambda name, t, alpha: torch.from_numpy(f(name, t.numpy(), alpha))


#: The kernel's operations on CPU tensors (no autograd: call under ``torch.no_grad()``).
TORCH = np_mlp.Ops(
    matmul=_matmul,
    sum0_into=lambda u, out: torch.sum(u, 0, out=out),
    activate=_elementwise(np_mlp.activate),
    derivative=_elementwise(np_mlp.derivative),
    like=lambda u, x: u.to(x.dtype),
)
