"""The quantities behind the experiments' figures (not the pictures).

- the seed's Bernoulli values F(0.1) = F(0.9) = 11.11, F(0.5) = 4, three independent ways;
- natural steps move the policy by the same KL under reparameterisation, vanilla steps do not;
- the natural gradient is within 90° of the vanilla gradient;
- the helpers that turn learning curves into the tables' numbers.
"""

from __future__ import annotations

import math

import pytest
import torch

from trustpg.core.fisher import fisher_vector_product
from trustpg.core.linalg import angle_degrees, conjugate_gradient, flat_grad
from trustpg.core.rules import VPG
from trustpg.core.update import surrogate
from trustpg.experiments import _common, bernoulli, invariance, stepsize_vs_constraint, why_constraint

from ._policies import KINDS, make_batch, make_policy

DT = torch.float64


# -- the seed's Bernoulli example ------------------------------------------------------------------
@pytest.mark.parametrize(("theta", "expected"), [(0.1, 11.111), (0.5, 4.0), (0.9, 11.111)])
def test_bernoulli_fisher_three_ways_matches_the_seed(theta, expected):
    closed = bernoulli.fisher_closed_form(theta)
    assert closed == pytest.approx(expected, abs=1e-3)
    assert bernoulli.fisher_kl_hessian(theta) == pytest.approx(closed, rel=1e-9)
    assert bernoulli.fisher_library(bernoulli.ProbBernoulli(theta)) == pytest.approx(closed, rel=1e-9)
    # Monte Carlo with 2e5 samples: the std of the estimate is ≤ 0.07 at θ = 0.1 (Var(score²) ≈ 878).
    mc = bernoulli.fisher_monte_carlo(theta, 200_000, torch.Generator().manual_seed(0))
    assert mc == pytest.approx(closed, abs=0.35)


@pytest.mark.parametrize("theta", [1e-4, 1e-2, 0.99, 1 - 1e-4])
def test_bernoulli_fisher_near_the_edges_matches_the_closed_form(theta):
    """Near θ = 0 and 1, where F grows like 1/θ(1−θ) (~1e4 here), by the KL Hessian and by the
    library's metric (PROB_EPS = 1e-8 clamps θ only far closer to the edge)."""
    closed = 1 / theta + 1 / (1 - theta)
    assert bernoulli.fisher_closed_form(theta) == pytest.approx(closed, rel=1e-12)
    assert bernoulli.fisher_kl_hessian(theta) == pytest.approx(closed, rel=1e-8)
    assert bernoulli.fisher_library(bernoulli.ProbBernoulli(theta)) == pytest.approx(closed, rel=1e-8)


@pytest.mark.parametrize("theta", [0.02, 0.5, 0.98, 0.999])
def test_the_natural_bernoulli_step_stays_in_the_simplex(theta):
    """x = α θ(1−θ) (α = 0.05): it shrinks toward the edges and never crosses them, where the
    vanilla step α does at θ = 0.97 and above (next test)."""
    s = bernoulli.steps_at(theta)
    assert s["natural_prob_dtheta"] == pytest.approx(0.05 * theta * (1 - theta), rel=1e-6)
    assert 0 < theta + s["natural_prob_dtheta"] < 1


@pytest.mark.parametrize("theta", [0.1, 0.5, 0.9])
def test_bernoulli_logit_fisher_is_theta_one_minus_theta(theta):
    assert bernoulli.fisher_kl_hessian(theta, logit=True) == pytest.approx(theta * (1 - theta), rel=1e-9)


def test_exact_batch_surrogate_is_the_expected_reward():
    policy = bernoulli.ProbBernoulli(0.3)
    batch = _common.exact_batch(torch.tensor([0.7, 0.3], dtype=DT), torch.tensor([0.0, 1.0], dtype=DT))
    dist = policy(batch.obs)
    value = surrogate(dist, batch, dist.log_prob(batch.actions).detach())
    assert float(value.detach()) == pytest.approx(0.3, abs=1e-12)  # J(θ) = θ for r(1) = 1, r(0) = 0


def test_natural_bernoulli_step_shrinks_near_the_edges_and_ignores_the_parameterisation():
    mid, edge, other = bernoulli.steps_at(0.5), bernoulli.steps_at(0.1), bernoulli.steps_at(0.9)
    # x = α F⁻¹ g = α θ(1−θ): 0.05·0.09 at the edges, 0.05·0.25 in the middle.
    assert edge["natural_prob_dtheta"] == pytest.approx(0.05 * 0.09, rel=1e-6)
    assert mid["natural_prob_dtheta"] == pytest.approx(0.05 * 0.25, rel=1e-6)
    assert other["natural_prob_dtheta"] == pytest.approx(edge["natural_prob_dtheta"], rel=1e-6)
    # The vanilla step in θ is α everywhere: it does not shrink.
    assert edge["vanilla_prob_dtheta"] == pytest.approx(mid["vanilla_prob_dtheta"], rel=1e-9)
    for s in (mid, edge, other):
        # Natural: same policy change in θ and in the logit (first order; α = 0.05 gives ≤ 3%).
        assert s["natural_logit_dtheta"] == pytest.approx(s["natural_prob_dtheta"], rel=0.03)
        assert s["natural_logit_kl"] == pytest.approx(s["natural_prob_kl"], rel=0.06)
        # Vanilla: the logit step moves θ by (θ(1−θ))² ≤ 1/16 times the probability step.
        assert s["vanilla_logit_dtheta"] < s["vanilla_prob_dtheta"] / 4


def test_vanilla_step_can_leave_the_probability_simplex():
    assert math.isnan(bernoulli.steps_at(0.97)["vanilla_prob_dtheta"])  # 0.97 + 0.05 > 1


# -- invariance under reparameterisation -----------------------------------------------------------
@pytest.fixture(scope="module")
def cases():
    return {c.name: c for c in invariance.cases(seed=0)}


#: |KL_b / KL_a − 1| allowed for a natural step with α = 1e-3 and no damping. Non-linear maps
#: (logit, log σ) differ at O(α) relative (measured 6e-4 and 7e-4); the linear rescaling
#: W = 10·V is exactly invariant up to the CG solve (measured 1e-10).
NATURAL_TOL = {"bernoulli": 5e-3, "gaussian": 5e-3, "mlp": 1e-6}


@pytest.mark.parametrize("name", ["bernoulli", "gaussian", "mlp"])
def test_natural_steps_move_the_policy_by_the_same_kl(cases, name):
    a, b = invariance.step_kls(cases[name], invariance.natural(invariance.SMALL_STEP))
    assert a > 0 and b > 0
    assert b / a == pytest.approx(1.0, abs=NATURAL_TOL[name])


@pytest.mark.parametrize("name", ["bernoulli", "gaussian", "mlp"])
def test_vanilla_steps_move_the_policy_by_different_kls(cases, name):
    a, b = invariance.step_kls(cases[name], VPG(lr=invariance.SMALL_STEP))
    assert a > 0 and b > 0
    assert max(a / b, b / a) > 2.0


@pytest.mark.parametrize("name", ["bernoulli", "mlp"])
def test_damping_breaks_the_invariance(cases, name):
    a, b = invariance.step_kls(cases[name], invariance.natural(invariance.SMALL_STEP, damping=0.1))
    assert max(a / b, b / a) > 1.5


@pytest.mark.parametrize("name", ["bernoulli", "gaussian"])
def test_large_natural_steps_break_the_invariance_of_nonlinear_maps(cases, name):
    a, b = invariance.step_kls(cases[name], invariance.natural(0.3))
    assert abs(b / a - 1) > 0.05  # measured 1.18 and 1.20


def test_large_natural_steps_stay_invariant_under_a_linear_map(cases):
    """W = 10·V: the two natural steps are the same line in policy space at every α (theory.md §6)."""
    a, b = invariance.step_kls(cases["mlp"], invariance.natural(0.3))
    assert a > 1.0  # a large step (KL 2.38), far outside the quadratic model
    assert b / a == pytest.approx(1.0, abs=1e-6)


def test_truncated_cg_breaks_the_invariance_only_where_it_truncates(cases):
    """CG's Krylov subspace is built in parameter coordinates: 10 iterations on the MLP's 67
    parameters leave the step 10% apart in KL; on the 1- and 2-parameter policies CG is exact
    after as many iterations, and the invariance holds."""
    a, b = invariance.step_kls(cases["mlp"], invariance.natural(invariance.SMALL_STEP, cg_iters=10))
    assert abs(b / a - 1) > 0.05  # measured 0.90
    for name, iters in (("bernoulli", 1), ("gaussian", 2)):
        a, b = invariance.step_kls(cases[name], invariance.natural(invariance.SMALL_STEP, cg_iters=iters))
        assert b / a == pytest.approx(1.0, abs=NATURAL_TOL[name])
    a, b = invariance.step_kls(cases["gaussian"], invariance.natural(invariance.SMALL_STEP, cg_iters=1))
    assert abs(b / a - 1) > 0.02  # one iteration short of exact: measured 0.94


# -- the angle between the natural and the vanilla gradient ----------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("damping", [0.0, 0.1])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_natural_gradient_is_within_90_degrees_of_the_gradient(kind, damping, seed):
    policy = make_policy(kind, seed)
    batch = make_batch(policy, n=64, seed=seed + 10)
    dist = policy(batch.obs)
    g = flat_grad(surrogate(dist, batch, dist.log_prob(batch.actions).detach()), policy.parameters())
    fvp = fisher_vector_product(policy, batch.obs, damping=damping)
    x = conjugate_gradient(fvp, g, iters=200, tol=1e-24).x
    assert float(torch.dot(x, g)) > 0
    assert angle_degrees(x, g) < 90.0
    # docs/theory.md: not only the converged solution, every CG iterate from x₀ = 0 (the truncated
    # solves trustpg takes: 10 or 25 iterations) is an ascent direction.
    for k in range(1, 16):
        xk = conjugate_gradient(fvp, g, iters=k, tol=0.0).x
        assert float(torch.dot(xk, g)) > 0, k


# -- curve summaries -------------------------------------------------------------------------------
def test_catastrophic_drops_counts_falls_by_more_than_half():
    assert why_constraint.catastrophic_drops([100, 60, 20, 20, 500, 249, 250]) == 2  # 60→20, 500→249
    assert why_constraint.catastrophic_drops([100, 50, 25]) == 0  # exactly half is not more than half
    assert why_constraint.catastrophic_drops([float("nan"), 10, 1]) == 1
    # Negative returns are measured from a floor: −200 → −1800 above −3000 is 2800 → 1200.
    assert why_constraint.catastrophic_drops([-200, -1800], floor=-3000) == 1
    assert why_constraint.catastrophic_drops([-200, -1000], floor=-3000) == 0


def test_final_and_auc():
    final, auc = _common.final_and_auc([0.0] * 9 + [10.0])
    assert final == 10.0 and auc == 1.0


def test_stepsize_summary_normalises_per_env():
    runs = [
        {"env": e, "algo": "vpg", "value": v, "seed": s, "final_return": r + s, "auc_return": r}
        for e, scale in (("A", 1.0), ("B", 100.0))
        for v, r0 in ((0.1, 0.0), (1.0, 5.0))
        for s in (0, 1)
        for r in [scale * r0]
    ]
    summary = {(r["env"], r["value"]): r for r in stepsize_vs_constraint.summarize(runs)}
    assert summary[("A", 1.0)]["final_return"] == 5.5
    assert summary[("A", 0.1)]["final_score"] == 0.0 and summary[("A", 1.0)]["final_score"] == 1.0
    assert summary[("B", 1.0)]["final_score"] == 1.0 and summary[("B", 1.0)]["seeds"] == 2
