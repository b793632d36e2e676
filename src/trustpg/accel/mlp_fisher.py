"""Fisher-vector products for the default MLP actor, by hand and without autograd.

For :class:`trustpg.nets.policies.Actor` the policy is φ(s; θ) = (net(s), [log σ]) with ``net`` a chain
of affine maps z = x Wᵀ + b and element-wise activations h = σ(z). The product is the same as the
generic analytic one in :mod:`trustpg.core.fisher`,

    (F + λI) v = (1/B) Jᵀ M (J v) + λ v,

but J v and Jᵀu are computed from activations cached by one forward pass, in plain tensor ops:

* forward mode (J v), layer by layer: dz = x dWᵀ + db + dx Wᵀ (no dx term for the first layer,
  whose input s does not depend on θ), then dh = σ'(z) ⊙ dz with σ' from the cached output h:
  tanh 1 − h², relu [h > 0], elu 1 if h > 0 else h + α;
* M is the distribution's own metric (``Distribution.metric``), applied per sample;
* reverse mode (Jᵀu): for each layer dW = uᵀ x, db = Σ_s u, then u ← (u W) ⊙ σ'(z) for the layer
  below (not needed below the first layer).

The Gaussian log σ is one parameter shared by all states, so its tangent is v_logσ broadcast over
the batch and its gradient is the batch sum: with M = diag(1/σ², 2) its block is (1/B)Σ_s 2 v = 2v,
orthogonal to the mean block. Per product this costs two matmuls per layer in each direction
(one for the first layer) and no graph bookkeeping (docs/performance.md, "Fisher-vector products").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from trustpg.core.distributions import Distribution
from trustpg.nets.policies import Actor

_ACTIVATIONS: tuple[type[nn.Module], ...] = (nn.Tanh, nn.ReLU, nn.ELU)


@dataclass(frozen=True)
class _Linear:
    """One affine layer: its weight W [out, in], its cached input x [B, in], where dW and db sit
    in the flat parameter vector, and preallocated work space: ``buffer`` [B, out] holds dz going
    forward and u at the layer's output going back; ``below`` is the previous Linear's buffer
    (None for the first layer), which receives u W."""

    weight: Tensor
    x: Tensor
    w_slice: slice
    b_slice: slice
    buffer: Tensor
    below: Tensor | None


def supports(policy: nn.Module, obs: Tensor) -> bool:
    """Whether :func:`actor_fvp` applies: exactly an ``Actor`` (not a subclass, whose forward may
    differ) whose net is Linear (with bias) and Tanh/ReLU/ELU modules, a 2-D ``obs``, and no
    parameters besides the layers' W and b and the Gaussian log σ."""
    if type(policy) is not Actor or type(policy.net) is not nn.Sequential or obs.dim() != 2:
        return False
    layers = list(policy.net)
    if not any(type(m) is nn.Linear for m in layers):
        return False
    expected: list[Tensor] = []
    for m in layers:
        if type(m) is nn.Linear:
            if m.bias is None:
                return False
            expected += [m.weight, m.bias]
        elif type(m) not in _ACTIVATIONS:
            return False
    if policy.kind == "gaussian":
        expected.append(policy.log_std)
    ids = [id(p) for p in expected]  # a Linear used twice (shared weights) is not supported
    return len(set(ids)) == len(ids) and {id(p) for p in policy.parameters()} == set(ids)


def _slices(policy: nn.Module) -> dict[int, slice]:
    """Where each parameter (by id) sits in θ = ``parameters_to_vector(policy.parameters())``.

    ``Module.parameters()`` yields a module's own parameters before its children's, so for the
    Gaussian ``Actor`` θ = (log σ, W₁, b₁, W₂, b₂, …)."""
    out, i = {}, 0
    for p in policy.parameters():
        out[id(p)] = slice(i, i + p.numel())
        i += p.numel()
    return out


def _derivative(module: nn.Module, h: Tensor) -> Tensor:
    """σ'(z) from the activation's output h = σ(z)."""
    if type(module) is nn.Tanh:
        return 1.0 - h * h
    if type(module) is nn.ReLU:
        return (h > 0).to(h.dtype)
    alpha = float(module.alpha)  # type: ignore[arg-type]
    return torch.where(h > 0, torch.ones_like(h), h + alpha)


def _record(
    policy: Actor, obs: Tensor, slices: dict[int, slice]
) -> tuple[Distribution, Tensor, list[_Linear | Tensor]]:
    """One forward pass under no_grad: the distribution, the net's output, and the chain of layers
    from the first Linear on (a ``_Linear``, or σ'(z) for an activation)."""
    calls: list[tuple[nn.Module, Tensor, Tensor]] = []

    def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        calls.append((module, inputs[0], output))

    hooks = [m.register_forward_hook(hook) for m in policy.net]
    try:
        with torch.no_grad():
            dist = policy(obs)
    finally:
        for h in hooks:
            h.remove()
    chain: list[_Linear | Tensor] = []
    below: Tensor | None = None
    for module, x, out in calls:
        if type(module) is nn.Linear:
            w, b = slices[id(module.weight)], slices[id(module.bias)]
            # A copy: the product is F at the parameters of this call, even if they move later.
            weight, buffer = module.weight.detach().clone(), torch.empty_like(out)
            chain.append(_Linear(weight, x, w, b, buffer, below))
            below = buffer
        elif chain:  # an activation before the first Linear does not depend on θ
            chain.append(_derivative(module, out))
    return dist, calls[-1][2], chain


def fast_fvp(policy: nn.Module, obs: Tensor, damping: float) -> Callable[[Tensor], Tensor] | None:
    """The :data:`trustpg.core.fisher.FastFVP` of the default MLP actor: :func:`actor_fvp` when
    :func:`supports` accepts ``policy`` and ``obs``, else ``None`` (the generic path applies)."""
    if not supports(policy, obs):
        return None
    return actor_fvp(policy, obs, damping)


def actor_fvp(policy: nn.Module, obs: Tensor, damping: float) -> Callable[[Tensor], Tensor] | None:
    """v ↦ (1/B) Jᵀ M J v + damping·v for a policy :func:`supports` accepts, or ``None`` if the
    recorded forward pass does not have the expected form (the caller then falls back).

    The returned function allocates only its [P] result (a new tensor per call); its [B, width]
    work space is allocated here and reused, so one such function must not be called from two
    threads at once."""
    assert isinstance(policy, Actor)
    slices = _slices(policy)
    dist, net_out, chain = _record(policy, obs, slices)
    phi = dist.params
    gaussian = policy.kind == "gaussian"
    if len(phi) != (2 if gaussian else 1) or phi[0] is not net_out:
        return None
    n_params = sum(p.numel() for p in policy.parameters())
    log_std = slices[id(policy.log_std)] if gaussian else slice(0, 0)
    batch = obs.shape[0]
    dtype, device = net_out.dtype, net_out.device

    def fvp(v: Tensor) -> Tensor:
        if v.shape != (n_params,):
            raise ValueError(f"v must be a flat vector of shape ({n_params},), got {tuple(v.shape)}")
        v = v.contiguous()
        with torch.no_grad():
            # J v through the net: forward-mode tangents of every layer.
            dh: Tensor | None = None
            for layer in chain:
                if isinstance(layer, _Linear):
                    w = layer.weight
                    dw = v[layer.w_slice].view_as(w)
                    dz = torch.addmm(v[layer.b_slice], layer.x, dw.t(), out=layer.buffer)
                    if dh is not None:
                        dz.addmm_(dh, w.t())
                    dh = dz
                elif dh is not None:
                    dh.mul_(layer)
            assert dh is not None
            tangents = (dh, v[log_std].expand_as(dh)) if gaussian else (dh,)
            mjv = dist.metric(tangents)
            out = torch.empty(n_params, dtype=dtype, device=device)
            if gaussian:
                torch.sum(mjv[1], 0, out=out[log_std]).div_(batch)
            # Jᵀu back through the net, u = M J v / B.
            u = mjv[0] / batch
            for layer in reversed(chain):
                if isinstance(layer, _Linear):
                    w = layer.weight
                    dw = out[layer.w_slice].view_as(w)
                    # dW = uᵀx; MKL is several times slower when the result's last dimension
                    # is the small one (e.g. [64, 11]), so form the wider orientation.
                    if w.shape[0] >= w.shape[1]:
                        dw.copy_(torch.mm(layer.x.t(), u).t())
                    else:
                        torch.mm(u.t(), layer.x, out=dw)
                    torch.sum(u, 0, out=out[layer.b_slice])
                    if layer.below is None:
                        break
                    u = torch.mm(u, w, out=layer.below)
                else:
                    u.mul_(layer)
            if damping:
                out.add_(v, alpha=damping)
            return out

    return fvp
