"""Curvature back ends: how the natural gradient g̃ ≈ (F + λI)⁻¹g is computed for NPG and TRPO.

The seed names NPG's limitation: the Fisher matrix F is costly to form and invert. The back ends
trade exactness for cost; all return a direction, never a step length, because the rules scale
it with β = sqrt(2δ / g̃ᵀFg̃) from the *exact* F (:func:`trustpg.core.fisher.fisher_quadratic`),
so a poor approximation costs direction, not safety.

- ``cg`` (:class:`NaturalDirection`): exact Fisher-vector products + conjugate gradient.
- ``kfac`` (:class:`trustpg.core.kfac.KFACDirection`): Kronecker-factored blocks per Linear layer.
- ``kfac-cg`` (:class:`trustpg.core.kfac.KFACPreconditionedCG`): CG on exact products,
  preconditioned by K-FAC — few iterations to near the exact solution.
- ``diagonal`` (:class:`DiagonalDirection`): the exact diagonal of F.
- ``empirical`` (:class:`EmpiricalDirection`): E[s sᵀ] with s = ∇log π(a_taken|s), by CG — the
  "empirical Fisher"; see docs/theory.md for its bias.

Each back end other than ``cg`` also measures, outside its timed solve, the angle between its
direction and the exact natural gradient (CG to convergence on a subsample of states).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, get_args

import torch
from torch import Tensor, nn

from trustpg.core.distributions import Distribution
from trustpg.core.fisher import (
    FVPMethod,
    fisher_diagonal_of,
    fisher_quadratic,
    fisher_vector_product,
)
from trustpg.core.layers import exact_output_grads, param_slices, record_linears
from trustpg.core.linalg import CG_ITERS, CG_TOL, angle_degrees, conjugate_gradient, flat_grad
from trustpg.core.names import CurvatureName
from trustpg.core.update import PolicyBatch

CURVATURES: tuple[str, ...] = get_args(CurvatureName)
#: CG iterations for the reference natural gradient of the angle diagnostic ("to convergence").
REFERENCE_CG_ITERS = 50


@dataclass(frozen=True)
class Solution:
    """A back end's natural-gradient direction and what it cost."""

    x: Tensor
    #: x̃ᵀ(F + λI)x̃ with the exact F, for the step size.
    xFx: float
    residual: float = math.nan
    iterations: int = 0
    #: CG met pᵀAp ≤ 0 (F not positive definite along p): no usable direction.
    breakdown: bool = False
    #: Seconds of the direction solve (including x̃ᵀFx̃, excluding the angle diagnostic).
    seconds: float = math.nan
    #: Angle in degrees to the exact natural gradient on a subsample (nan: not measured).
    ng_angle: float = math.nan


class Direction(Protocol):
    """What NPG and TRPO need of a curvature back end."""

    def solve(self, policy: nn.Module, batch: PolicyBatch, g: Tensor) -> Solution: ...

    def state_dict(self) -> dict[str, Any]:
        """State carried between updates (K-FAC's running factors), ``torch.optim`` style."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class Stateless(Protocol):
    """A :class:`Direction` that carries nothing between updates; its back ends subclass this
    protocol for the two empty methods (a protocol, not a concrete base: DESIGN §6)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None


@dataclass(frozen=True)
class NaturalDirection(Stateless):
    """``cg``: g̃ = (F + λI)⁻¹g by conjugate gradient on exact Fisher-vector products."""

    damping: float = 0.1
    cg_iters: int = CG_ITERS
    cg_tol: float = CG_TOL
    method: FVPMethod = "analytic"
    #: Every k-th state is used for the Fisher (k = 1: all). Cheaper, unbiased F.
    fvp_stride: int = 1

    def solve(self, policy: nn.Module, batch: PolicyBatch, g: Tensor) -> Solution:
        t0 = time.perf_counter()
        obs = batch.obs[:: self.fvp_stride]
        fvp = fisher_vector_product(policy, obs, damping=self.damping, method=self.method)
        cg = conjugate_gradient(fvp, g, iters=self.cg_iters, tol=self.cg_tol)
        broken = cg.status == "breakdown" or not bool(torch.isfinite(cg.x).all())
        xFx = math.nan if broken else float(torch.dot(cg.x, fvp(cg.x) if cg.Ax is None else cg.Ax))
        return Solution(cg.x, xFx, cg.residual, cg.iterations, broken, time.perf_counter() - t0)


def reference_angle(
    policy: nn.Module, obs: Tensor, g: Tensor, x: Tensor, *, damping: float, states: int
) -> float:
    """Angle in degrees between ``x`` and the exact (F_sub + λI)⁻¹g, F_sub the Fisher on ``states``
    evenly spaced states of ``obs`` (CG, :data:`REFERENCE_CG_ITERS` iterations); nan if off (0)."""
    if states <= 0:
        return math.nan
    sub = obs[:: max(1, obs.shape[0] // states)][:states]
    fvp = fisher_vector_product(policy, sub, damping=damping)
    ref = conjugate_gradient(fvp, g, iters=REFERENCE_CG_ITERS, tol=1e-20)
    return angle_degrees(x, ref.x) if ref.status != "breakdown" else math.nan


def finish(
    policy: nn.Module, batch: PolicyBatch, g: Tensor, x: Tensor, t0: float, *,
    damping: float, fvp_stride: int, angle_states: int, residual: float = math.nan,
    iterations: int = 0, breakdown: bool = False, dist: Distribution | None = None,
) -> Solution:  # fmt: skip
    """A non-CG back end's :class:`Solution`: x̃ᵀ(F + λI)x̃ exact, the solve's seconds since
    ``t0``, then (untimed) the angle to the exact natural gradient. ``dist``: the policy's
    distribution on ``batch.obs[::fvp_stride]`` if the back end has it (one forward pass less)."""
    obs = batch.obs[::fvp_stride]
    finite = bool(torch.isfinite(x).all())
    ok = finite and not breakdown
    xFx = fisher_quadratic(policy, obs, x, damping=damping, dist=dist) if ok else math.nan
    seconds = time.perf_counter() - t0
    angle = math.nan
    if finite and not breakdown:
        angle = reference_angle(policy, obs, g, x, damping=damping, states=angle_states)
    return Solution(x, xFx, residual, iterations, breakdown, seconds, angle)


def exact_fisher_diagonal(policy: nn.Module, obs: Tensor) -> Tensor:
    """diag F, exact, flat in θ's order: Linear layers from per-state gradients g āᵀ of φ·Lₖ
    (Σ_k over the columns of M's square root, :func:`trustpg.core.layers.exact_output_grads`),
    other parameters one restricted Fisher-vector product per entry."""
    dist, records = record_linears(policy, obs)
    grads = exact_output_grads(dist, records)
    where = param_slices(policy)
    n = sum(p.numel() for p in policy.parameters())
    diag = torch.zeros(n, dtype=next(policy.parameters()).dtype)
    done: set[int] = set()
    batch = obs.shape[0]
    for r, gz in zip(records, grads):
        a2 = r.inputs.pow(2).repeat(gz.shape[0] // batch, 1)
        block = gz.pow(2).T @ a2 / batch  # [out, in(+1)]: Σ over states and columns k
        in_dim = r.module.in_features
        diag[where[id(r.module.weight)]] = block[:, :in_dim].reshape(-1)
        done.add(id(r.module.weight))
        if r.module.bias is not None:
            diag[where[id(r.module.bias)]] = block[:, in_dim]
            done.add(id(r.module.bias))
    others = [p for p in policy.parameters() if id(p) not in done]
    if others:
        d = fisher_diagonal_of(policy, obs, others)
        offset = 0
        for p in others:
            diag[where[id(p)]] = d[offset : offset + p.numel()]
            offset += p.numel()
    return diag


@dataclass(frozen=True)
class DiagonalDirection(Stateless):
    """``diagonal``: g̃ = g / (diag F + λ), with the exact diagonal of F."""

    damping: float = 0.1
    fvp_stride: int = 1
    #: States for the angle diagnostic (0: off).
    angle_states: int = 1024

    def solve(self, policy: nn.Module, batch: PolicyBatch, g: Tensor) -> Solution:
        t0 = time.perf_counter()
        d = exact_fisher_diagonal(policy, batch.obs[:: self.fvp_stride])
        x = g / (d + self.damping)
        return finish(policy, batch, g, x, t0, damping=self.damping, fvp_stride=self.fvp_stride,
                      angle_states=self.angle_states)  # fmt: skip


def empirical_fisher_product(
    policy: nn.Module, obs: Tensor, actions: Tensor, *, damping: float = 0.0
) -> Callable[[Tensor], Tensor]:
    """v ↦ (F_emp + λI)v with F_emp = (1/B) Σᵢ sᵢsᵢᵀ, sᵢ = ∇θ log π(aᵢ|sᵢ) for the actions taken.

    Matrix-free, like the analytic FVP: one recorded forward pass; sᵢᵀv = ∂/∂u[(Σ uᵢsᵢ)·v]
    (double vjp), then Σ sᵢ(sᵢᵀv)/B as one more vjp.
    """
    params = list(policy.parameters())
    logp = policy(obs).log_prob(actions)
    u = torch.zeros_like(logp, requires_grad=True)
    jt_u = flat_grad((logp * u).sum(), params, create_graph=True)
    batch = logp.shape[0]

    def product(v: Tensor) -> Tensor:
        (sv,) = torch.autograd.grad(torch.dot(jt_u, v), u, retain_graph=True)
        return flat_grad((logp * sv.detach()).sum() / batch, params, retain_graph=True) + damping * v

    return product


@dataclass(frozen=True)
class EmpiricalDirection(Stateless):
    """``empirical``: g̃ = (F_emp + λI)⁻¹g by CG, F_emp from the scores of the actions taken."""

    damping: float = 0.1
    cg_iters: int = CG_ITERS
    cg_tol: float = CG_TOL
    fvp_stride: int = 1
    angle_states: int = 1024

    def solve(self, policy: nn.Module, batch: PolicyBatch, g: Tensor) -> Solution:
        t0 = time.perf_counter()
        k = self.fvp_stride
        product = empirical_fisher_product(policy, batch.obs[::k], batch.actions[::k], damping=self.damping)
        cg = conjugate_gradient(product, g, iters=self.cg_iters, tol=self.cg_tol)
        return finish(policy, batch, g, cg.x, t0, damping=self.damping, fvp_stride=k,
                      angle_states=self.angle_states, residual=cg.residual,
                      iterations=cg.iterations, breakdown=cg.status == "breakdown")  # fmt: skip
