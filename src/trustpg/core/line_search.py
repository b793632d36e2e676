"""The trust-region distance and TRPO's backtracking line search.

The seed's TRPO bounds the policy change by a KL divergence. Which one is a choice
(Schulman et al. 2015): the theory's lower bound (Theorem 1) uses the *maximum* over states of
KL(π_old ‖ π_new); the practical algorithm its *mean* over the visited states (eq. 12); some
implementations (sb3-contrib) measure the *reverse* direction, mean KL(π_new ‖ π_old). All three
agree to second order for small steps (½xᵀFx), and differ for the steps TRPO takes.

There is one KL function, ``kl(old, new)`` = KL(old ‖ new); the reverse distance calls it with
the arguments swapped, explicitly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import get_args

from torch import Tensor, nn

from trustpg.core.distributions import Distribution, kl
from trustpg.core.linalg import set_flat_params
from trustpg.core.names import KLMode

#: What the line search keeps ≤ δ: mean_s KL(old‖new), max_s KL(old‖new), or mean_s KL(new‖old).
KL_MODES: tuple[str, ...] = get_args(KLMode)


def kl_distance(old: Distribution, new: Distribution, mode: KLMode) -> Tensor:
    """The trust-region distance between two policies on a batch of states, a scalar.

    ``"mean"``: (1/B) Σ_s KL(π_old(·|s) ‖ π_new(·|s)); ``"max"``: max_s KL(π_old ‖ π_new);
    ``"reverse"``: (1/B) Σ_s KL(π_new ‖ π_old). ``old`` and ``new`` have batch shape ``[B]``.
    """
    if mode == "mean":
        return kl(old, new).mean()
    if mode == "max":
        return kl(old, new).max()
    if mode == "reverse":
        return kl(new, old).mean()
    raise ValueError(f"kl mode must be one of {', '.join(KL_MODES)}, got {mode!r}")


@dataclass(frozen=True)
class KLs:
    """The three distances of one step, measured on the batch."""

    mean: float
    max: float
    reverse: float

    def of(self, mode: KLMode) -> float:
        """The distance ``mode`` names."""
        if mode not in KL_MODES:
            raise ValueError(f"kl mode must be one of {', '.join(KL_MODES)}, got {mode!r}")
        return float(getattr(self, mode))


def measure_kls(old: Distribution, new: Distribution) -> KLs:
    """All three distances (:func:`kl_distance`) from one forward and one reverse KL per state."""
    forward = kl(old, new)
    return KLs(float(forward.mean()), float(forward.max()), float(kl(new, old).mean()))


#: No step was measured: every distance is nan.
NO_KLS = KLs(math.nan, math.nan, math.nan)


@dataclass(frozen=True)
class LineSearchResult:
    accepted: bool
    backtracks: int
    surrogate: float
    #: The enforced distance at the last candidate tried.
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
    """Try θ_old + ratioᵏ·x for k = 0, 1, …; keep the first with distance ≤ δ and a better surrogate.

    ``evaluate()`` returns (surrogate, distance) at the policy's current parameters, the distance
    being the one the rule enforces (:func:`kl_distance`). If no candidate qualifies, the
    parameters are restored bit-exactly to ``theta_old``.
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
