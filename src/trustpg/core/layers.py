"""What a layer-wise curvature back end records of one forward pass: each ``nn.Linear``'s inputs
a and pre-activation outputs z, and the gradients ∂/∂z of per-state scalars.

For a Linear layer z = W a + b called once per state, the per-state gradient of any scalar ℓ
with respect to [W b] is g āᵀ with g = ∂ℓ/∂z and ā = [a; 1] (Martens & Grosse 2015, §3), so
Fisher blocks and the Fisher diagonal of such a layer follow from ā and g alone. Layers are found
through the module tree (``policy.modules()``) and recorded with forward hooks; a Linear called
more or less than once per forward, or on inputs that are not ``[B, in]``, is reported as not
factorable and its parameters are left to the caller's fallback.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from trustpg.core.distributions import Distribution


@dataclass(frozen=True)
class LinearRecord:
    """One Linear layer's record from a forward pass over B states."""

    module: nn.Linear
    #: ā = [a, 1] (the 1 only if the layer has a bias), detached, ``[B, in(+1)]``.
    inputs: Tensor
    #: z = W a + b, in the autograd graph, ``[B, out]``.
    outputs: Tensor


def with_bias_column(a: Tensor, bias: bool) -> Tensor:
    """ā = [a, 1] (``[B, in+1]``) for a layer with a bias, else a, detached."""
    a = a.detach()
    return torch.cat([a, torch.ones(a.shape[0], 1, dtype=a.dtype)], dim=1) if bias else a


def record_linears(policy: nn.Module, obs: Tensor) -> tuple[Distribution, list[LinearRecord]]:
    """One forward pass of ``policy`` on ``obs`` ``[B, ...]``, recording every factorable Linear.

    Returns the distribution (in the autograd graph) and the records in ``policy.modules()``
    order. A Linear layer is factorable when it ran exactly once on an input of shape ``[B, in]``.
    """
    batch = obs.shape[0]
    seen: dict[int, list[tuple[Tensor, Tensor]]] = {}
    linears = [m for m in policy.modules() if isinstance(m, nn.Linear)]
    handles = []

    def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        seen.setdefault(id(module), []).append((inputs[0], output))

    try:
        for m in linears:
            handles.append(m.register_forward_hook(hook))
        dist = policy(obs)
    finally:
        for h in handles:
            h.remove()
    records = []
    for m in linears:
        calls = seen.get(id(m), [])
        if len(calls) != 1:
            continue
        a, z = calls[0]
        if a.dim() != 2 or a.shape[0] != batch or z.dim() != 2:
            continue
        records.append(LinearRecord(m, with_bias_column(a, m.bias is not None), z))
    return dist, records


def _grads(scalar: Tensor, records: list[LinearRecord]) -> list[Tensor]:
    outs = [r.outputs for r in records]
    got = torch.autograd.grad(scalar, outs, retain_graph=True, allow_unused=True)
    return [torch.zeros_like(z) if g is None else g.detach() for g, z in zip(got, outs)]


def sampled_output_grads(
    dist: Distribution, records: list[LinearRecord], generator: torch.Generator
) -> list[Tensor]:
    """gᵢ = ∂ log π(ãᵢ|sᵢ)/∂zᵢ with ãᵢ ~ π(·|sᵢ) drawn from the policy itself (one per state),
    per layer ``[B, out]``: E_ã[g gᵀ] is the true Fisher's output factor, which the actions taken
    (the empirical Fisher) would not give for any policy but the one that collected them."""
    with torch.no_grad():
        actions = dist.sample(generator)
    return _grads(dist.log_prob(actions).sum(), records) if records else []


def metric_square_root(dist: Distribution) -> Tensor:
    """Lₛ with Lₛ Lₛᵀ = M(φₛ) per state, ``[B, K, K]`` (K = size of φ per state), from the
    distribution's metric applied to the K basis tangents and a symmetric eigendecomposition
    (eigenvalues clipped at 0: a Categorical's metric in logits is only semi-definite)."""
    phi = dist.params
    batch = phi[0].shape[0]
    sizes = [p[0].numel() for p in phi]
    K = sum(sizes)
    cols = []
    for k in range(K):
        e = torch.zeros(batch, K, dtype=phi[0].dtype)
        e[:, k] = 1.0
        tangents = tuple(t.reshape(p.shape) for t, p in zip(torch.split(e, sizes, dim=1), phi))
        cols.append(torch.cat([m.detach().reshape(batch, -1) for m in dist.metric(tangents)], dim=1))
    M = torch.stack(cols, dim=-1)
    evals, evecs = torch.linalg.eigh(0.5 * (M + M.transpose(1, 2)))
    return evecs * evals.clamp_min(0.0).sqrt().unsqueeze(1)


def exact_output_grads(dist: Distribution, records: list[LinearRecord]) -> list[Tensor]:
    """Per layer ``[K·B, out]``: for each column k of Lₛ (:func:`metric_square_root`) the gradient
    ∂(φₛ·Lₛ[:, k])/∂zₛ. Σ_k g gᵀ = J_zᵀ M J_z per state, the Fisher's exact expectation over
    actions, at the cost of K backward passes."""
    if not records:
        return []
    L = metric_square_root(dist)
    phi = torch.cat([p.reshape(p.shape[0], -1) for p in dist.params], dim=1)
    per_k = [_grads((phi * L[:, :, k]).sum(), records) for k in range(L.shape[-1])]
    return [torch.cat([gs[i] for gs in per_k], dim=0) for i in range(len(records))]


def param_slices(policy: nn.Module) -> dict[int, slice]:
    """Where each parameter (by ``id``) sits in θ = the flat vector of ``policy.parameters()``."""
    out, offset = {}, 0
    for p in policy.parameters():
        out[id(p)] = slice(offset, offset + p.numel())
        offset += p.numel()
    return out
