"""The critic's regression gradient for the default MLP critic, by hand and without autograd.

For a critic that declares an :class:`~trustpg.nets.policies.MLPSpec` (the default
:class:`trustpg.nets.policies.Critic`), V(s) = net(s) with ``net`` a chain of affine maps
z = x Wᵀ + b and element-wise activations h = σ(z), ending in one affine output unit. The loss of a
minibatch of m states is L = (1/m) Σ (V(s) − R)², so at the output u = ∂L/∂z_out = (2/m)(V − R) and,
layer by layer going back,

    ∂L/∂W = uᵀ x,   ∂L/∂b = Σ_s u,   u ← (u W) ⊙ σ'(z)   (σ' from the cached output h:
    tanh 1 − h², relu [h > 0], elu 1 if h > 0 else h + α).

This is what autograd computes (tests/unit/test_mlp_value.py compares the two in float64), minus
the graph bookkeeping, and tanh goes through NumPy, whose vectorised tanh is ~8× faster than
PyTorch's on a single thread for [128, 64] blocks (docs/performance.md, "Critic fit"). The critic
fit runs on a background thread during collection; the less of it holds the GIL, the less it slows
the environment stepping in the main thread.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from trustpg.nets.policies import MLPSpec


def unsupported(spec: MLPSpec) -> str:
    """Why :class:`MSEGradient` cannot run ``spec`` ("" if it can): a value head on the CPU
    (NumPy does the tanh)."""
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
        inputs = [x]
        h = x
        for layer in self.linear[:-1]:
            h = _activate(self.activation, self.alpha, torch.addmm(layer.bias, h, layer.weight.t()))
            inputs.append(h)
        last = self.linear[-1]
        u = torch.addmm(last.bias, h, last.weight.t()).sub_(y.unsqueeze(1)).mul_(2.0 / x.shape[0])
        for i in range(len(self.linear) - 1, -1, -1):
            layer, h = self.linear[i], inputs[i]
            gw = layer.weight.grad
            assert gw is not None and layer.bias.grad is not None
            # dW = uᵀh; MKL is several times slower when the result's last dimension is the small
            # one (the first layer's [64, D]), so form the wider orientation there.
            if gw.shape[0] > gw.shape[1]:
                gw.copy_(torch.mm(h.t(), u).t())
            else:
                torch.mm(u.t(), h, out=gw)
            torch.sum(u, 0, out=layer.bias.grad)
            if i > 0:
                u = torch.mm(u, layer.weight).mul_(_derivative(self.activation, self.alpha, h))


def _activate(name: str, alpha: float, z: Tensor) -> Tensor:
    """σ(z) in place (tanh through NumPy's, on the tensor's memory)."""
    if name == "tanh":
        np.tanh(z.numpy(), out=z.numpy())
        return z
    if name == "relu":
        return z.clamp_min_(0.0)
    return torch.nn.functional.elu_(z, alpha=alpha)


def _derivative(name: str, alpha: float, h: Tensor) -> Tensor:
    """σ'(z) from the activation's output h = σ(z), in torch's rounding (the fused 1 − h·h of
    ``addcmul``; :func:`trustpg.accel.np_mlp.derivative` is the same formula in NumPy's)."""
    if name == "tanh":
        return torch.addcmul(torch.ones((), dtype=h.dtype), h, h, value=-1.0)
    if name == "relu":
        return (h > 0).to(h.dtype)
    return torch.where(h > 0, torch.ones((), dtype=h.dtype), h + alpha)
