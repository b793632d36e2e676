"""The peer's KL convention: sb3-contrib's TRPO bounds the KL averaged over action dimensions.

So its ``target_kl`` and ``cg_damping`` are A times smaller than the same numbers in trustpg
(benchmarks/sb3_runner.py: ``trustpg_equivalent``). Checked against torch.distributions (what
sb3's ``kl_divergence`` calls for a diagonal Gaussian) and, where the bench extra is installed,
against sb3 itself.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from trustpg.core.distributions import DiagGaussian

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import sb3_runner


def _pair(a: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(a)
    mean_old, mean_new = torch.randn(32, a, generator=g), torch.randn(32, a, generator=g)
    return mean_old, 0.3 * torch.randn(a, generator=g), mean_new, 0.3 * torch.randn(a, generator=g)


@pytest.mark.parametrize("a", [1, 3, 8, 17])
def test_per_dimension_mean_kl_is_the_summed_kl_over_a(a: int) -> None:
    mo, so, mn, sn = _pair(a)
    ours = DiagGaussian(mo, so).kl_to(DiagGaussian(mn, sn)).mean()
    theirs = kl_divergence(Normal(mo, so.exp().expand_as(mo)), Normal(mn, sn.exp().expand_as(mn))).mean()
    torch.testing.assert_close(theirs * a, ours, rtol=1e-5, atol=0.0)


def test_the_step_scale_matches_with_the_equivalent_settings() -> None:
    """β = sqrt(2δ / xᵀ(H + λI)x): the peer's (H/A, δ, λ) give the same β as (H, δ·A, λ·A)."""
    a = 8
    mo, so, _, _ = _pair(a)
    params = torch.cat([torch.zeros(a), so])

    def per_state_kl(theta: torch.Tensor) -> torch.Tensor:
        return DiagGaussian(mo + theta[:a], theta[a:]).kl_to(DiagGaussian(mo, so)).mean()

    x = torch.randn(2 * a, generator=torch.Generator().manual_seed(1))
    _, hx = torch.autograd.functional.hvp(per_state_kl, params, x)
    eq = sb3_runner.trustpg_equivalent(0.01, 0.1, a)
    assert eq == pytest.approx({"max_kl": 0.08, "damping": 0.8})
    peer = 2 * 0.01 / float(x @ (hx / a + 0.1 * x))
    ours = 2 * eq["max_kl"] / float(x @ (hx + eq["damping"] * x))
    assert peer == pytest.approx(ours, rel=1e-6)


def test_sb3_contrib_averages_over_action_dimensions() -> None:
    pytest.importorskip("sb3_contrib")
    from stable_baselines3.common.distributions import DiagGaussianDistribution
    from stable_baselines3.common.distributions import kl_divergence as sb3_kl

    a = 6
    mo, so, mn, sn = _pair(a)
    old = DiagGaussianDistribution(a).proba_distribution(mo, so)
    new = DiagGaussianDistribution(a).proba_distribution(mn, sn)
    ours = DiagGaussian(mn, sn).kl_to(DiagGaussian(mo, so)).mean()
    torch.testing.assert_close(sb3_kl(new, old).mean() * a, ours, rtol=1e-5, atol=0.0)
