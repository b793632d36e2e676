"""The seed's three update rules behind one interface: VPG, NPG and TRPO.

They differ only in how the policy gradient g becomes a step x:

- VPG:  x = α g                                  (steepest ascent in the Euclidean norm)
- NPG:  x = α g̃, g̃ ≈ F⁻¹g                       (Kakade 2002), α fixed or set so ½xᵀFx = δ
- TRPO: x = β g̃, β = sqrt(2δ / g̃ᵀFg̃), then a backtracking line search that accepts only a
        step within the trust region (distance ≤ δ) that improves L (Schulman et al. 2015, App. C)

g̃ comes from a curvature back end (:mod:`trustpg.core.curvature`; exact CG by default), g̃ᵀFg̃
always from the exact F; the distance TRPO enforces is mean, max or reverse KL
(:mod:`trustpg.core.line_search`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from trustpg.core.curvature import Direction, NaturalDirection, Solution
from trustpg.core.distributions import Distribution, detach
from trustpg.core.linalg import angle_degrees, flat_grad, flat_params, set_flat_params
from trustpg.core.line_search import NO_KLS, KLMode, KLs, backtracking_line_search, measure_kls
from trustpg.core.optim import Adam
from trustpg.core.update import PolicyBatch, SkipReason, StepStats, surrogate, trust_region_scale_of


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


def _evaluate(policy: nn.Module, batch: PolicyBatch, s: _Start) -> tuple[float, KLs]:
    """Surrogate and the three KL distances at the policy's current parameters."""
    with torch.no_grad():
        dist = policy(batch.obs)
        return float(surrogate(dist, batch, s.logp_old)), measure_kls(s.old, dist)


def _skip(s: _Start, reason: SkipReason, sol: Solution | None = None, angle: float = math.nan) -> StepStats:
    return StepStats(
        s.surr, s.surr, math.nan, 0.0, sol.residual if sol else math.nan,
        sol.iterations if sol else 0, 0, angle, float(s.g.norm()), 0.0, s.entropy, reason,
        kl_max=0.0, kl_reverse=0.0, solve_seconds=sol.seconds if sol else math.nan,
        ng_angle=sol.ng_angle if sol else math.nan,
    )  # fmt: skip


def _taken(
    s: _Start, after: float, predicted: float, kls: KLs, sol: Solution | None,
    backtracks: int, angle: float, step: Tensor,
) -> StepStats:  # fmt: skip
    return StepStats(
        s.surr, after, predicted, kls.mean, sol.residual if sol else math.nan,
        sol.iterations if sol else 0, backtracks, angle, float(s.g.norm()), float(step.norm()),
        s.entropy, kl_max=kls.max, kl_reverse=kls.reverse,
        solve_seconds=sol.seconds if sol else math.nan, ng_angle=sol.ng_angle if sol else math.nan,
    )  # fmt: skip


def _natural_step(
    policy: nn.Module, batch: PolicyBatch, s: _Start, direction: Direction
) -> tuple[Solution | None, float, SkipReason]:
    """g̃ (and g̃ᵀFg̃), the angle between g̃ and g, and a reason to skip ("" if none)."""
    if not torch.isfinite(s.g).all():
        return None, math.nan, "non-finite gradient"
    if float(s.g.norm()) == 0.0:
        return None, math.nan, "zero gradient"
    sol = direction.solve(policy, batch, s.g)
    if sol.breakdown or not torch.isfinite(sol.x).all():
        return sol, math.nan, "conjugate gradient breakdown (F not positive definite)"
    return sol, angle_degrees(sol.x, s.g), ""


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
        after, kls = _evaluate(policy, batch, s)
        if not (math.isfinite(after) and math.isfinite(kls.mean)):
            set_flat_params(policy, s.theta)
            return _skip(s, "non-finite surrogate or KL after the step")
        return _taken(s, after, math.nan, kls, None, 0, math.nan, step)

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


class FollowsDirection(Protocol):
    """NPG's and TRPO's state is their curvature back end's (K-FAC's running factors); they subclass
    this protocol for the two methods that say so (a protocol, not a concrete base: DESIGN §6)."""

    direction: Direction

    def state_dict(self) -> dict[str, Any]:
        return self.direction.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.direction.load_state_dict(state)


@dataclass(frozen=True)
class NPG(FollowsDirection):
    """Natural policy gradient: θ ← θ + α F⁻¹g.

    With ``max_kl`` = None the seed's rule with a fixed ``step_size`` α. With ``max_kl`` = δ the
    step is normalised so that ½xᵀFx = δ (α = sqrt(2δ / g̃ᵀFg̃)), with no line search.
    """

    step_size: float = 0.1
    max_kl: float | None = 0.01
    direction: Direction = field(default_factory=NaturalDirection)

    def with_kl_budget(self, max_kl: float) -> NPG:
        """A copy with δ = ``max_kl``; ``self`` if the step size is fixed (``max_kl`` None)."""
        return self if self.max_kl is None else replace(self, max_kl=max_kl)

    def update(self, policy: nn.Module, batch: PolicyBatch) -> StepStats:
        s = _start(policy, batch)
        sol, angle, reason = _natural_step(policy, batch, s, self.direction)
        if reason or sol is None:
            return _skip(s, reason, sol, angle)
        if self.max_kl is None:
            alpha = self.step_size
        else:
            alpha = trust_region_scale_of(sol.xFx, self.max_kl)
            if math.isnan(alpha):
                return _skip(s, "non-positive or non-finite g̃ᵀFg̃", sol, angle)
        step = alpha * sol.x
        predicted = 0.5 * alpha**2 * sol.xFx
        set_flat_params(policy, s.theta + step)
        after, kls = _evaluate(policy, batch, s)
        if not (math.isfinite(after) and math.isfinite(kls.mean)):
            set_flat_params(policy, s.theta)
            return _skip(s, "non-finite surrogate or KL after the step", sol, angle)
        return _taken(s, after, predicted, kls, sol, 0, angle, step)


@dataclass(frozen=True)
class TRPO(FollowsDirection):
    """Trust region policy optimisation: the natural step scaled to the KL budget, then enforced.

    x = β g̃ with β = sqrt(2δ / g̃ᵀFg̃); the line search shrinks x until the distance ``kl``
    (mean KL(π_old ‖ π_new) by default; max over states, or mean reverse KL) is ≤ δ and the
    surrogate improves, or restores θ.
    """

    max_kl: float = 0.01
    direction: Direction = field(default_factory=NaturalDirection)
    backtrack_ratio: float = 0.8
    max_backtracks: int = 10
    kl: KLMode = "mean"

    def with_kl_budget(self, max_kl: float) -> TRPO:
        """A copy with δ = ``max_kl`` (sharing the curvature back end and its state)."""
        return replace(self, max_kl=max_kl)

    def update(self, policy: nn.Module, batch: PolicyBatch) -> StepStats:
        s = _start(policy, batch)
        sol, angle, reason = _natural_step(policy, batch, s, self.direction)
        if reason or sol is None:
            return _skip(s, reason, sol, angle)
        beta = trust_region_scale_of(sol.xFx, self.max_kl)
        if math.isnan(beta):
            return _skip(s, "non-positive or non-finite g̃ᵀFg̃", sol, angle)
        step = beta * sol.x
        last = [NO_KLS]

        def evaluate() -> tuple[float, float]:
            surr, kls = _evaluate(policy, batch, s)
            last[0] = kls
            return surr, kls.of(self.kl)

        ls = backtracking_line_search(
            policy, s.theta, step, evaluate, surrogate_old=s.surr, max_kl=self.max_kl,
            backtrack_ratio=self.backtrack_ratio, max_backtracks=self.max_backtracks,
        )  # fmt: skip
        if not ls.accepted:
            stats = _skip(s, "line search found no step within the KL budget that improves", sol, angle)
            return replace(stats, backtracks=ls.backtracks)
        scale = self.backtrack_ratio**ls.backtracks
        predicted = 0.5 * (beta * scale) ** 2 * sol.xFx
        return _taken(s, ls.surrogate, predicted, last[0], sol, ls.backtracks, angle, scale * step)
