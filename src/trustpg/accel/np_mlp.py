"""The one NumPy kernel of the default MLP (DESIGN §5): forward, the MSE gradient (a vjp), the
activation table and its derivatives, and PyTorch's Adam step.

The MLP is a chain of affine maps z = h Wᵀ + b with an element-wise activation σ between them
(none after the last). Layers are given as ``(wt, b)`` with ``wt`` = Wᵀ [in, out] (a transposed
view of torch's [out, in] weight, or a contiguous copy of it) and b [out]. For the MSE loss of a
minibatch of m states, L = (1/m) Σ (V(s) − R)², the output gradient is u = (2/m)(V − R) and, layer
by layer going back, ∂L/∂W = uᵀ h, ∂L/∂b = Σ_s u, u ← (u W) ⊙ σ'(z), with σ' read from the cached
output h = σ(z) (:func:`derivative`).

The kernel is written over :class:`Ops`, the few array operations it needs: :data:`NUMPY` (the
default; the critic worker and the sampler) or torch's (:data:`trustpg.accel.mlp_value.TORCH`, for
the in-process critic gradient on the live parameters: NumPy's OpenBLAS runs multithreaded in the
trainer process and took 2.8–7.5 ms per minibatch gradient there instead of ~0.13 ms). The
element-wise formulas (:func:`activate`, :func:`derivative`) exist once, in NumPy; torch's ops run
them on the tensors' memory.

This module imports only NumPy: the critic worker (:mod:`trustpg.accel.critic_worker`, a child
process that never loads torch) uses it, as does the NumPy action sampler
(:mod:`trustpg.accel.fast_actor`). tests/unit/test_np_mlp.py checks it against autograd in float64.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

#: The activations the kernel knows (the names of :data:`trustpg.nets.policies.ACTIVATIONS`).
ACTIVATIONS = ("tanh", "relu", "elu")

Layer = tuple[np.ndarray, np.ndarray]  # (Wᵀ [in, out], b [out])
#: An array of the library :class:`Ops` works on (np.ndarray for :data:`NUMPY`).
Array = Any


def activate(name: str, z: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """σ(z), in place for tanh and relu (the result is ``z``); ELU returns a new array of z's dtype."""
    if name == "tanh":
        return np.tanh(z, out=z)
    if name == "relu":
        return np.maximum(z, 0, out=z)
    if name == "elu":  # α (e^z − 1) for z ≤ 0
        return np.where(z > 0, z, alpha * np.expm1(np.minimum(z, 0))).astype(z.dtype, copy=False)
    raise ValueError(f"unknown activation {name!r}; the NumPy MLP kernel knows {ACTIVATIONS}")


def derivative(name: str, h: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """σ'(z) from the activation's output h = σ(z): tanh 1 − h², relu [h > 0], elu 1 if h > 0 else h + α."""
    if name == "tanh":
        return 1.0 - h * h
    if name == "relu":
        return (h > 0).astype(h.dtype)
    if name == "elu":
        return np.where(h > 0, 1.0, h + alpha).astype(h.dtype)
    raise ValueError(f"unknown activation {name!r}; the NumPy MLP kernel knows {ACTIVATIONS}")


@dataclass(frozen=True)
class Ops:
    """The array operations the kernel is written over (arrays of one library: NumPy's or torch's)."""

    matmul: Callable[..., Any]
    """``matmul(a, b)``: a new array; ``matmul(a, b, out=c)``: the product written into c."""
    sum0_into: Callable[[Any, Any], Any]
    """``sum0_into(u, out)``: Σ over the first axis, written into ``out``."""
    activate: Callable[[str, Any, float], Any]
    """As :func:`activate`."""
    derivative: Callable[[str, Any, float], Any]
    """As :func:`derivative`."""
    like: Callable[[Any, Any], Any]
    """``like(u, x)``: u in x's dtype (u itself if it is already)."""


def forward(
    layers: list[tuple[Array, Array]], activation: str, x: Array, alpha: float = 1.0,
    ops: Ops | None = None,
) -> list[Array]:  # fmt: skip
    """The input of every layer and the output: ``[x, h₁, …, out]`` (x itself is never written)."""
    ops = ops or NUMPY
    outs = [x]
    for i, (wt, b) in enumerate(layers):
        z = ops.matmul(outs[-1], wt)  # a new array: the in-place ops below never touch the input
        z += b
        if i < len(layers) - 1:
            z = ops.activate(activation, z, alpha)
        outs.append(z)
    return outs


def mse_gradient(
    layers: list[tuple[Array, Array]], activation: str, x: Array, y: Array,
    grads: list[tuple[Array, Array]], alpha: float = 1.0, ops: Ops | None = None,
) -> None:  # fmt: skip
    """Writes ∂/∂(W, b) of mean((V(x) − y)²) into ``grads`` = ``[(dW [out, in], db [out]), …]``
    for a network with one output unit; x [m, in], y [m]."""
    ops = ops or NUMPY
    outs = forward(layers, activation, x, alpha, ops)
    u = ops.like((outs[-1][:, 0] - y)[:, None] * (2.0 / x.shape[0]), x)
    for i in range(len(layers) - 1, -1, -1):
        ops.matmul(u.T, outs[i], out=grads[i][0])
        ops.sum0_into(u, grads[i][1])
        if i > 0:
            u = ops.matmul(u, layers[i][0].T) * ops.derivative(activation, outs[i], alpha)


NUMPY = Ops(
    matmul=np.matmul,
    sum0_into=lambda u, out: np.sum(u, axis=0, out=out),
    activate=activate,
    derivative=derivative,
    like=lambda u, x: u.astype(x.dtype, copy=False),
)


def adam_step(
    p: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, step: float,
    lr: float, beta1: float, beta2: float, eps: float,
) -> None:  # fmt: skip
    """One step of PyTorch's Adam (no weight decay, no amsgrad) on float32 arrays, in place;
    ``step`` counts this one (1 for the first)."""
    m *= beta1
    m += (1.0 - beta1) * g
    v *= beta2
    v += (1.0 - beta2) * (g * g)
    bias1 = 1.0 - beta1**step
    bias2_sqrt = (1.0 - beta2**step) ** 0.5
    denom = np.sqrt(v) / np.float32(bias2_sqrt) + np.float32(eps)
    p -= np.float32(lr / bias1) * (m / denom)
