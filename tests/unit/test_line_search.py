"""The trust-region distances (mean, max, reverse KL) and the line search that enforces them."""

from __future__ import annotations

import pytest
import torch
import torch.distributions as td

from trustpg.core.curvature import NaturalDirection
from trustpg.core.distributions import Categorical, DiagGaussian, detach
from trustpg.core.linalg import flat_params, set_flat_params
from trustpg.core.line_search import KL_MODES, kl_distance, measure_kls
from trustpg.core.rules import TRPO

from ._policies import make_batch, make_policy

DT = torch.float64


def _pairs():
    g = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(2, 20, 4, generator=g, dtype=DT)
    m0, m1, s0, s1 = torch.randn(4, 20, 3, generator=g, dtype=DT)
    yield (Categorical(logits=z0), Categorical(logits=z1),
           td.Categorical(logits=z0), td.Categorical(logits=z1))  # fmt: skip
    yield (DiagGaussian(m0, 0.3 * s0), DiagGaussian(m1, 0.3 * s1),
           td.Independent(td.Normal(m0, (0.3 * s0).exp()), 1),
           td.Independent(td.Normal(m1, (0.3 * s1).exp()), 1))  # fmt: skip


@pytest.mark.parametrize("pair", list(_pairs()), ids=["categorical", "gaussian"])
def test_distances_against_torch_distributions(pair):
    old, new, t_old, t_new = pair
    forward = td.kl_divergence(t_old, t_new)
    reverse = td.kl_divergence(t_new, t_old)
    torch.testing.assert_close(kl_distance(old, new, "mean"), forward.mean())
    torch.testing.assert_close(kl_distance(old, new, "max"), forward.max())
    torch.testing.assert_close(kl_distance(old, new, "reverse"), reverse.mean())
    kls = measure_kls(old, new)
    for mode in KL_MODES:
        assert kls.of(mode) == pytest.approx(float(kl_distance(old, new, mode)), rel=1e-12)
    assert kls.max > kls.mean  # these states differ: the max is not the mean
    with pytest.raises(ValueError, match="kl mode"):
        kl_distance(old, new, "median")  # type: ignore[arg-type]


def _distances_after(policy, theta0, batch) -> dict[str, float]:
    with torch.no_grad():
        new = policy(batch.obs)
        set_flat_params(policy, theta0)
        old = detach(policy(batch.obs))
    return {m: float(kl_distance(old, new, m)) for m in KL_MODES}


@pytest.mark.parametrize("kind", ["categorical", "gaussian"])
def test_line_search_enforces_the_chosen_distance(kind):
    """Each mode keeps its own distance ≤ δ; the max mode takes a smaller step than the mean."""
    delta = 0.005
    taken = {}
    for mode in KL_MODES:
        policy = make_policy(kind, 0)
        batch = make_batch(policy, 64, seed=1)
        theta0 = flat_params(policy)
        stats = TRPO(max_kl=delta, direction=NaturalDirection(), kl=mode, max_backtracks=30).update(
            policy, batch
        )
        assert not stats.skipped
        theta1 = flat_params(policy)
        d = _distances_after(policy, theta0, batch)
        assert d[mode] <= delta
        assert stats.measured_kl == pytest.approx(d["mean"], rel=1e-9)
        assert stats.kl_max == pytest.approx(d["max"], rel=1e-9)
        assert stats.kl_reverse == pytest.approx(d["reverse"], rel=1e-9)
        taken[mode] = (stats, float((theta1 - theta0).norm()))
    # The max over 64 states exceeds the mean: enforcing it needs more backtracks.
    assert taken["max"][0].backtracks > taken["mean"][0].backtracks
    assert taken["max"][1] < taken["mean"][1]
