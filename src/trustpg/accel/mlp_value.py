"""The critic's regression gradient for the default MLP critic, by hand and without autograd.

For :class:`trustpg.nets.policies.Critic`, V(s) = net(s) with ``net`` a chain of affine maps
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
from torch import Tensor, nn

from trustpg.nets.policies import Critic

_ACTIVATIONS: tuple[type[nn.Module], ...] = (nn.Tanh, nn.ReLU, nn.ELU)


def supports(critic: nn.Module) -> bool:
    """Whether :class:`MSEGradient` applies: exactly a ``Critic`` (not a subclass, whose forward may
    differ) whose net alternates Linear layers (with bias) and Tanh/ReLU/ELU modules, ends in a
    one-unit Linear, and has no other parameters; CPU tensors (NumPy does the tanh)."""
    if type(critic) is not Critic or type(critic.net) is not nn.Sequential:
        return False
    layers = list(critic.net)
    linear = layers[0::2]
    if not all(type(m) is nn.Linear and m.bias is not None for m in linear):
        return False
    if not all(type(m) in _ACTIVATIONS for m in layers[1::2]) or type(layers[-1]) is not nn.Linear:
        return False
    if linear[-1].out_features != 1:
        return False
    params = [p for m in linear for p in (m.weight, m.bias)]
    ids = {id(p) for p in params}
    own = {id(p) for p in critic.parameters()}
    return len(ids) == len(params) and own == ids and all(p.device.type == "cpu" for p in params)


class MSEGradient:
    """Writes ∂L/∂φ of L = mean((V(x) − y)²) into the critic parameters' ``.grad``.

    The ``.grad`` tensors are created once and overwritten in place by every call, so an optimizer
    that reads ``p.grad`` (as :class:`trustpg.core.optim.Adam`) can step right after. Not thread-safe:
    one instance per thread."""

    def __init__(self, critic: nn.Module) -> None:
        if not supports(critic):
            raise ValueError("MSEGradient needs a trustpg Critic MLP (see mlp_value.supports)")
        modules = list(critic.net)
        self.linear: list[nn.Linear] = modules[0::2]  # type: ignore[assignment]
        self.activations: list[nn.Module] = modules[1::2]
        for m in self.linear:
            for p in (m.weight, m.bias):
                if p.grad is None or p.grad.shape != p.shape or p.grad.dtype != p.dtype:
                    p.grad = torch.zeros_like(p)

    @torch.no_grad()
    def __call__(self, x: Tensor, y: Tensor) -> None:
        """x: states ``[m, D]``; y: targets ``[m]``."""
        inputs = [x]
        h = x
        for layer, act in zip(self.linear, self.activations):
            h = _activate(act, torch.addmm(layer.bias, h, layer.weight.t()))
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
                u = torch.mm(u, layer.weight).mul_(_derivative(self.activations[i - 1], h))


def _activate(module: nn.Module, z: Tensor) -> Tensor:
    """σ(z) in place."""
    if type(module) is nn.Tanh:
        np.tanh(z.numpy(), out=z.numpy())
        return z
    if type(module) is nn.ReLU:
        return z.clamp_min_(0.0)
    return torch.nn.functional.elu_(z, alpha=float(module.alpha))  # type: ignore[arg-type]


def _derivative(module: nn.Module, h: Tensor) -> Tensor:
    """σ'(z) from the activation's output h = σ(z)."""
    if type(module) is nn.Tanh:
        return torch.addcmul(torch.ones((), dtype=h.dtype), h, h, value=-1.0)
    if type(module) is nn.ReLU:
        return (h > 0).to(h.dtype)
    alpha = float(module.alpha)  # type: ignore[arg-type]
    return torch.where(h > 0, torch.ones((), dtype=h.dtype), h + alpha)
