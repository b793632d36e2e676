"""The seed's three update rules behind one interface: VPG, NPG and TRPO.

All three maximise the importance-weighted surrogate L(θ') = E[π_θ'(a|s)/π_θ(a|s) · Â(s,a)],
whose gradient at θ' = θ is the policy gradient g. They differ only in how g becomes a step x:

- VPG:  x = α g                                  (steepest ascent in the Euclidean norm)
- NPG:  x = α g̃, g̃ = F⁻¹g                       (Kakade 2002), α fixed or set so ½xᵀFx = δ
- TRPO: x = β g̃, β = sqrt(2δ / g̃ᵀFg̃), then a backtracking line search that accepts only a
        step with measured E[KL(π_θ ‖ π_θ')] ≤ δ and L(θ') > L(θ) (Schulman et al. 2015, App. C)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from trustpg.core.distributions import Distribution, detach, kl
from trustpg.core.fisher import FastFVP, FVPMethod, fisher_vector_product
from trustpg.core.linalg import (
    CG_ITERS,
    CG_TOL,
    CGResult,
    angle_degrees,
    conjugate_gradient,
    flat_grad,
    flat_params,
    set_flat_params,
)
from trustpg.core.optim import Adam


@dataclass(frozen=True)
class PolicyBatch:
    """What an update needs: states, actions taken, and their advantage estimates (all ``[B,…]``)."""

    obs: Tensor
    actions: Tensor
    advantages: Tensor


@dataclass(frozen=True)
class StepStats:
    """What one update did. ``nan`` marks a quantity the rule does not compute."""

    surrogate_before: float
    surrogate_after: float
    #: ½ xᵀ F x, the second-order prediction of the mean KL of the step x.
    predicted_kl: float
    #: E_s[KL(π_old ‖ π_new)] measured after the step on the batch.
    measured_kl: float
    cg_residual: float
    cg_iterations: int
    backtracks: int
    #: Angle between the natural gradient F⁻¹g and g, degrees (< 90 when F is PD).
    grad_angle: float
    grad_norm: float
    step_norm: float
    entropy: float
    #: Empty if the step was taken, else why θ was left unchanged.
    skip_reason: str = ""

    @property
    def skipped(self) -> bool:
        return bool(self.skip_reason)


def surrogate(dist: Distribution, batch: PolicyBatch, logp_old: Tensor) -> Tensor:
    """L = mean_i[ exp(log π_θ'(a_i|s_i) − log π_θ(a_i|s_i)) · Â_i ] (Schulman et al. 2015, eq. 14)."""
    ratio = torch.exp(dist.log_prob(batch.actions) - logp_old)
    return (ratio * batch.advantages).mean()


def trust_region_scale(g_nat: Tensor, Fg_nat: Tensor, max_kl: float) -> float:
    """β = sqrt(2δ / g̃ᵀFg̃): the step β g̃ has ½(βg̃)ᵀF(βg̃) = δ. ``nan`` if g̃ᵀFg̃ ≤ 0 or not finite."""
    shs = float(torch.dot(g_nat, Fg_nat))
    if not math.isfinite(shs) or shs <= 0.0:
        return float("nan")
    return math.sqrt(2.0 * max_kl / shs)


class UpdateRule(Protocol):
    """Turns a batch into one change of the policy's parameters, in place.

    What the trainer needs of a rule, and all it asks: it never looks at the concrete class.
    """

    def update(self, policy: nn.Module, batch: PolicyBatch) -> StepStats: ...

    def with_kl_budget(self, max_kl: float) -> UpdateRule:
        """This rule with the KL budget δ = ``max_kl`` (a copy; ``self`` is unchanged), or ``self``
        for a rule without one (VPG, NPG with a fixed step size)."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """What the rule carries from one update to the next (an optimiser's moments), as a
        ``torch.optim``-style state dict; empty for a stateless rule."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`'s output (a stateless rule ignores it)."""
        ...


class _Stateless:
    """The state methods of a rule that carries nothing between updates."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


@dataclass
class _Start:
    """The policy at θ_old: what every rule computes first."""

    theta: Tensor
    old: Distribution
    logp_old: Tensor
    surr: float
    g: Tensor
    entropy: float


def _start(policy: nn.Module, batch: PolicyBatch) -> _Start:
    theta = flat_params(policy)
    dist = policy(batch.obs)
    old = detach(dist)
    logp_old = old.log_prob(batch.actions)
    surr = surrogate(dist, batch, logp_old)
    g = flat_grad(surr, policy.parameters())
    return _Start(theta, old, logp_old, float(surr.detach()), g, float(old.entropy().mean()))


def _evaluate(policy: nn.Module, batch: PolicyBatch, s: _Start) -> tuple[float, float]:
    with torch.no_grad():
        dist = policy(batch.obs)
        return float(surrogate(dist, batch, s.logp_old)), float(kl(s.old, dist).mean())


def _skip(s: _Start, reason: str, cg: CGResult | None = None, angle: float = math.nan) -> StepStats:
    return StepStats(
        s.surr, s.surr, math.nan, 0.0, cg.residual if cg else math.nan,
        cg.iterations if cg else 0, 0, angle, float(s.g.norm()), 0.0, s.entropy, reason,
    )  # fmt: skip


@dataclass(frozen=True)
class NaturalDirection:
    """How g̃ = (F + λI)⁻¹ g is computed: shared by NPG and TRPO."""

    damping: float = 0.1
    cg_iters: int = CG_ITERS
    cg_tol: float = CG_TOL
    method: FVPMethod = "analytic"
    #: Every k-th state is used for the Fisher (k = 1: all). Cheaper, unbiased F.
    fvp_stride: int = 1
    #: Optional faster analytic FVP for the policies it knows (:data:`trustpg.core.fisher.FastFVP`),
    #: passed in by the caller: the trainer gives :func:`trustpg.accel.mlp_fisher.fast_fvp`.
    fast_fvp: FastFVP | None = None

    def solve(
        self, policy: nn.Module, batch: PolicyBatch, g: Tensor
    ) -> tuple[CGResult, Callable[[Tensor], Tensor]]:
        obs = batch.obs[:: self.fvp_stride]
        fvp = fisher_vector_product(policy, obs, damping=self.damping, method=self.method, fast=self.fast_fvp)
        return conjugate_gradient(fvp, g, iters=self.cg_iters, tol=self.cg_tol), fvp


def _natural_step(
    policy: nn.Module, batch: PolicyBatch, s: _Start, direction: NaturalDirection
) -> tuple[CGResult, Tensor, float, str]:
    """g̃, F g̃, the angle between g̃ and g, and a reason to skip ("" if none)."""
    if not torch.isfinite(s.g).all():
        return CGResult(s.g, math.nan, 0, "breakdown"), s.g, math.nan, "non-finite gradient"
    if float(s.g.norm()) == 0.0:
        return CGResult(s.g, 0.0, 0, "converged"), s.g, math.nan, "zero gradient"
    cg, fvp = direction.solve(policy, batch, s.g)
    if cg.status == "breakdown" or not torch.isfinite(cg.x).all():
        return cg, s.g, math.nan, "conjugate gradient breakdown (F not positive definite)"
    Fx = fvp(cg.x) if cg.Ax is None else cg.Ax
    return cg, Fx, angle_degrees(cg.x, s.g), ""


class VPG:
    """Vanilla policy gradient: θ ← θ + α g (plain SGD ascent; the seed's baseline).

    With ``optimizer="adam"`` the step is Adam's (an option peers use); its state lives here and
    is saved with checkpoints through :meth:`state_dict`.
    """

    def __init__(self, lr: float = 0.01, optimizer: str = "sgd") -> None:
        if optimizer not in ("sgd", "adam"):
            raise ValueError(f"VPG optimizer must be 'sgd' or 'adam', got {optimizer!r}")
        self.lr = lr
        self.optimizer = optimizer
        self._adam: Adam | None = None
        self._pending_state: dict[str, Any] | None = None

    def update(self, policy: nn.Module, batch: PolicyBatch) -> StepStats:
        s = _start(policy, batch)
        if not torch.isfinite(s.g).all():
            return _skip(s, "non-finite gradient")
        if self.optimizer == "sgd":
            step = self.lr * s.g
            set_flat_params(policy, s.theta + step)
        else:
            step = self._adam_step(policy, s)
        after, measured = _evaluate(policy, batch, s)
        if not (math.isfinite(after) and math.isfinite(measured)):
            set_flat_params(policy, s.theta)
            return _skip(s, "non-finite surrogate or KL after the step")
        return StepStats(
            s.surr, after, math.nan, measured, math.nan, 0, 0, math.nan,
            float(s.g.norm()), float(step.norm()), s.entropy,
        )  # fmt: skip

    def _adam_step(self, policy: nn.Module, s: _Start) -> Tensor:
        if self._adam is None:
            self._adam = Adam(policy.parameters(), lr=self.lr)
            if self._pending_state is not None:
                self._adam.load_state_dict(self._pending_state)
        offset = 0
        for p in policy.parameters():
            n = p.numel()
            p.grad = -s.g[offset : offset + n].view_as(p).clone()
            offset += n
        self._adam.step()
        self._adam.zero_grad(set_to_none=True)
        return flat_params(policy) - s.theta

    def with_kl_budget(self, max_kl: float) -> VPG:
        """VPG has no KL budget: ``self``."""
        return self

    def state_dict(self) -> dict[str, Any]:
        """Optimizer state (empty for SGD, which has none); state loaded but not used yet (the
        Adam optimiser is made at the first step) is returned as loaded, so load → save keeps it."""
        if self._adam is None:
            return self._pending_state or {}
        return self._adam.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._pending_state = state or None
        if self._adam is not None and state:
            self._adam.load_state_dict(state)


@dataclass(frozen=True)
class NPG(_Stateless):
    """Natural policy gradient: θ ← θ + α F⁻¹g.

    With ``max_kl`` = None the seed's rule with a fixed ``step_size`` α. With ``max_kl`` = δ the
    step is normalised so that ½xᵀFx = δ (α = sqrt(2δ / g̃ᵀFg̃)), with no line search.
    """

    step_size: float = 0.1
    max_kl: float | None = 0.01
    direction: NaturalDirection = NaturalDirection()

    def with_kl_budget(self, max_kl: float) -> NPG:
        """A copy with δ = ``max_kl``; ``self`` if the step size is fixed (``max_kl`` None)."""
        return self if self.max_kl is None else replace(self, max_kl=max_kl)

    def update(self, policy: nn.Module, batch: PolicyBatch) -> StepStats:
        s = _start(policy, batch)
        cg, Fx, angle, reason = _natural_step(policy, batch, s, self.direction)
        if reason:
            return _skip(s, reason, cg, angle)
        if self.max_kl is None:
            alpha = self.step_size
        else:
            alpha = trust_region_scale(cg.x, Fx, self.max_kl)
            if math.isnan(alpha):
                return _skip(s, "non-positive or non-finite g̃ᵀFg̃", cg, angle)
        step = alpha * cg.x
        predicted = 0.5 * alpha**2 * float(torch.dot(cg.x, Fx))
        set_flat_params(policy, s.theta + step)
        after, measured = _evaluate(policy, batch, s)
        if not (math.isfinite(after) and math.isfinite(measured)):
            set_flat_params(policy, s.theta)
            return _skip(s, "non-finite surrogate or KL after the step", cg, angle)
        return StepStats(
            s.surr, after, predicted, measured, cg.residual, cg.iterations, 0, angle,
            float(s.g.norm()), float(step.norm()), s.entropy,
        )  # fmt: skip


def kl_budget(max_kl: float, max_kl_final: float | None, steps_done: int, total_steps: int) -> float:
    """δ for an update that starts after ``steps_done`` of ``total_steps`` env steps: linear from
    ``max_kl`` to ``max_kl_final`` over the run, then constant (``max_kl`` if no final value)."""
    if max_kl_final is None:
        return max_kl
    frac = min(max(steps_done / total_steps, 0.0), 1.0) if total_steps > 0 else 1.0
    return max_kl + frac * (max_kl_final - max_kl)


@dataclass(frozen=True)
class LineSearchResult:
    accepted: bool
    backtracks: int
    surrogate: float
    kl: float


def backtracking_line_search(
    policy: nn.Module,
    theta_old: Tensor,
    full_step: Tensor,
    evaluate: Callable[[], tuple[float, float]],
    *,
    surrogate_old: float,
    max_kl: float,
    backtrack_ratio: float = 0.8,
    max_backtracks: int = 10,
) -> LineSearchResult:
    """Try θ_old + ratioᵏ·x for k = 0, 1, …; keep the first with KL ≤ δ and a better surrogate.

    ``evaluate()`` returns (surrogate, mean KL(old ‖ new)) at the policy's current parameters.
    If no candidate qualifies, the parameters are restored bit-exactly to ``theta_old``.
    """
    surr, measured = surrogate_old, 0.0
    for k in range(max_backtracks + 1):
        set_flat_params(policy, theta_old + (backtrack_ratio**k) * full_step)
        surr, measured = evaluate()
        finite = math.isfinite(surr) and math.isfinite(measured)
        if finite and measured <= max_kl and surr > surrogate_old:
            return LineSearchResult(True, k, surr, measured)
    set_flat_params(policy, theta_old)
    return LineSearchResult(False, max_backtracks + 1, surr, measured)


@dataclass(frozen=True)
class TRPO(_Stateless):
    """Trust region policy optimisation: the natural step scaled to the KL budget, then enforced.

    x = β g̃ with β = sqrt(2δ / g̃ᵀFg̃); the line search shrinks x until the measured
    E[KL(π_old ‖ π_new)] ≤ δ and the surrogate improves, or restores θ.
    """

    max_kl: float = 0.01
    direction: NaturalDirection = NaturalDirection()
    backtrack_ratio: float = 0.8
    max_backtracks: int = 10

    def with_kl_budget(self, max_kl: float) -> TRPO:
        """A copy with δ = ``max_kl``."""
        return replace(self, max_kl=max_kl)

    def update(self, policy: nn.Module, batch: PolicyBatch) -> StepStats:
        s = _start(policy, batch)
        cg, Fx, angle, reason = _natural_step(policy, batch, s, self.direction)
        if reason:
            return _skip(s, reason, cg, angle)
        beta = trust_region_scale(cg.x, Fx, self.max_kl)
        if math.isnan(beta):
            return _skip(s, "non-positive or non-finite g̃ᵀFg̃", cg, angle)
        step = beta * cg.x
        ls = backtracking_line_search(
            policy, s.theta, step, lambda: _evaluate(policy, batch, s),
            surrogate_old=s.surr, max_kl=self.max_kl,
            backtrack_ratio=self.backtrack_ratio, max_backtracks=self.max_backtracks,
        )  # fmt: skip
        if not ls.accepted:
            stats = _skip(s, "line search found no step within the KL budget that improves", cg, angle)
            return _with_backtracks(stats, ls.backtracks)
        scale = self.backtrack_ratio**ls.backtracks
        return StepStats(
            s.surr, ls.surrogate, self.max_kl * scale**2, ls.kl, cg.residual, cg.iterations,
            ls.backtracks, angle, float(s.g.norm()), float((scale * step).norm()), s.entropy,
        )  # fmt: skip


def _with_backtracks(stats: StepStats, backtracks: int) -> StepStats:
    return StepStats(**{**stats.__dict__, "backtracks": backtracks})
