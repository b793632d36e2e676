"""What every update rule shares: its input (:class:`PolicyBatch`), its report
(:class:`StepStats`), its protocol (:class:`UpdateRule`), the surrogate and the trust-region scale.

All rules maximise the importance-weighted surrogate L(θ') = E[π_θ'(a|s)/π_θ(a|s) · Â(s,a)],
whose gradient at θ' = θ is the policy gradient g (the rules are in :mod:`trustpg.core.rules`),
plus, if the batch asks for it, an entropy bonus c · E_s[H(π_θ'(·|s))].
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import torch
from torch import Tensor, nn

from trustpg.core.distributions import Distribution

#: Why an update left θ unchanged ("" when the step was taken): the rules' reasons and the
#: trainer's last line of defence. metrics.csv's ``skip_reason`` takes exactly these values.
SkipReason = Literal[
    "",
    "non-finite gradient",
    "zero gradient",
    "conjugate gradient breakdown (F not positive definite)",
    "non-positive or non-finite g̃ᵀFg̃",
    "non-finite surrogate or KL after the step",
    "line search found no step within the KL budget that improves",
    "non-finite parameters after the step",
]


@dataclass(frozen=True)
class PolicyBatch:
    """What an update needs: states, actions taken, and their advantage estimates (all ``[B,…]``),
    and the weight c of the entropy bonus in the objective (0: the surrogate alone)."""

    obs: Tensor
    actions: Tensor
    advantages: Tensor
    entropy_coef: float = 0.0


@dataclass(frozen=True)
class StepStats:
    """What one update did. ``nan`` marks a quantity the rule does not compute."""

    surrogate_before: float
    surrogate_after: float
    #: ½ xᵀ(F + λI) x, the damped quadratic model of the step x's mean KL that NPG and TRPO scale
    #: to δ; the KL's own second-order term ½ xᵀFx is smaller by ½λ‖x‖².
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
    skip_reason: SkipReason = ""
    #: max_s KL(π_old ‖ π_new) after the step on the batch.
    kl_max: float = math.nan
    #: E_s[KL(π_new ‖ π_old)] after the step on the batch (the reverse direction).
    kl_reverse: float = math.nan
    #: Seconds the curvature back end took for the direction g̃ (and g̃ᵀFg̃).
    solve_seconds: float = math.nan
    #: Angle in degrees between the back end's g̃ and the exact natural gradient on a subsample
    #: (nan for the exact back end, cg, or when the diagnostic is off).
    ng_angle: float = math.nan

    @property
    def skipped(self) -> bool:
        return bool(self.skip_reason)


def surrogate(dist: Distribution, batch: PolicyBatch, logp_old: Tensor) -> Tensor:
    """L = mean_i[ exp(log π_θ'(a_i|s_i) − log π_θ(a_i|s_i)) · Â_i ] (Schulman et al. 2015, eq. 14),
    plus c · mean_i[ H(π_θ'(·|s_i)) ] when the batch's ``entropy_coef`` c is not 0.

    The bonus is the exact entropy of each state's action distribution (a masked one's over its
    valid actions), not an estimate from the sampled actions; it changes the objective only: the
    trust region (the KL and its Fisher) is the same with or without it.
    """
    ratio = torch.exp(dist.log_prob(batch.actions) - logp_old)
    objective = (ratio * batch.advantages).mean()
    if batch.entropy_coef != 0.0:
        objective = objective + batch.entropy_coef * dist.entropy().mean()
    return objective


def trust_region_scale_of(xFx: float, max_kl: float) -> float:
    """β = sqrt(2δ / g̃ᵀFg̃) from the quadratic form itself; ``nan`` if it is ≤ 0 or not finite."""
    if not math.isfinite(xFx) or xFx <= 0.0:
        return float("nan")
    return math.sqrt(2.0 * max_kl / xFx)


def trust_region_scale(g_nat: Tensor, Fg_nat: Tensor, max_kl: float) -> float:
    """β = sqrt(2δ / g̃ᵀFg̃): the step β g̃ has ½(βg̃)ᵀF(βg̃) = δ. ``nan`` if g̃ᵀFg̃ ≤ 0 or not finite."""
    return trust_region_scale_of(float(torch.dot(g_nat, Fg_nat)), max_kl)


def kl_budget(max_kl: float, max_kl_final: float | None, steps_done: int, total_steps: int) -> float:
    """δ for an update that starts after ``steps_done`` of ``total_steps`` env steps: linear from
    ``max_kl`` to ``max_kl_final`` over the run, then constant (``max_kl`` if no final value)."""
    if max_kl_final is None:
        return max_kl
    frac = min(max(steps_done / total_steps, 0.0), 1.0) if total_steps > 0 else 1.0
    return max_kl + frac * (max_kl_final - max_kl)


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
        """What the rule carries from one update to the next (an optimiser's moments, K-FAC's
        factors), as a ``torch.optim``-style state dict; empty for a stateless rule."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`'s output (a stateless rule ignores it)."""
        ...
