"""VPG, NPG and TRPO update rules on tiny policies, against independent computations."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
from torch.func import grad, jacrev

from trustpg.core import rules as steps
from trustpg.core.curvature import NaturalDirection
from trustpg.core.distributions import detach, kl
from trustpg.core.fisher import fisher_matrix, fisher_vector_product
from trustpg.core.linalg import angle_degrees, flat_params, set_flat_params
from trustpg.core.line_search import KLs, backtracking_line_search
from trustpg.core.rules import NPG, TRPO, VPG
from trustpg.core.update import PolicyBatch, surrogate, trust_region_scale

from ._policies import KINDS, dist_at, make_batch, make_policy

DT = torch.float64
B = 64
#: A CG that solves to round-off on these ~30-parameter problems.
EXACT_CG = {"cg_iters": 200, "cg_tol": 1e-24}


def _setup(kind: str, hidden: int | None = None, seed: int = 0):
    policy = make_policy(kind, seed) if hidden is None else make_policy(kind, seed, hidden)
    return policy, make_batch(policy, B, seed=seed + 1)


def _surrogate_fn(policy, batch: PolicyBatch):
    """θ' ↦ L(θ') with π_old fixed at the policy's current parameters, written from scratch."""
    with torch.no_grad():
        logp_old = policy(batch.obs).log_prob(batch.actions)

    def L(theta):
        logp = dist_at(policy, theta, batch.obs).log_prob(batch.actions)
        return (torch.exp(logp - logp_old) * batch.advantages).mean()

    return L


def _grad(policy, batch: PolicyBatch) -> torch.Tensor:
    return grad(_surrogate_fn(policy, batch))(flat_params(policy))


def _mean_kl(policy, theta_old: torch.Tensor, batch: PolicyBatch) -> float:
    with torch.no_grad():
        old = dist_at(policy, theta_old, batch.obs)
        return float(kl(old, policy(batch.obs)).mean())


def _assert_params_finite_and_equal(policy, theta):
    now = flat_params(policy)
    assert torch.isfinite(now).all()
    assert torch.equal(now, theta)


# ---------------------------------------------------------------------------------------------
# The surrogate.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_surrogate_at_old_is_mean_advantage_and_grad_is_reinforce(kind):
    policy, batch = _setup(kind)
    dist = policy(batch.obs)
    logp_old = detach(dist).log_prob(batch.actions)
    L = surrogate(dist, batch, logp_old)
    assert float(L.detach()) == pytest.approx(float(batch.advantages.mean()), rel=1e-14, abs=1e-15)
    # ∇L at θ_old = mean_i ∇log π(a_i|s_i) A_i, from per-sample scores.
    params = list(policy.parameters())
    g = torch.cat([x.reshape(-1) for x in torch.autograd.grad(L, params)])
    theta = flat_params(policy)
    scores = jacrev(lambda t: dist_at(policy, t, batch.obs).log_prob(batch.actions))(theta)
    reinforce = (scores * batch.advantages[:, None]).mean(0)
    torch.testing.assert_close(g, reinforce, rtol=1e-10, atol=1e-13)
    assert float(g.norm()) > 1e-3


def test_surrogate_away_from_old_is_importance_weighted():
    policy, batch = _setup("gaussian")
    logp_old = torch.full((B,), -1.0, dtype=DT)  # any fixed log π_old
    dist = policy(batch.obs)
    with torch.no_grad():
        expected = (torch.exp(dist.log_prob(batch.actions) + 1.0) * batch.advantages).mean()
    assert float(surrogate(dist, batch, logp_old).detach()) == pytest.approx(float(expected), rel=1e-12)


# ---------------------------------------------------------------------------------------------
# trust_region_scale.
# ---------------------------------------------------------------------------------------------


def test_trust_region_scale_closed_form():
    g = torch.Generator().manual_seed(0)
    m = torch.randn(6, 6, generator=g, dtype=DT)
    F = m @ m.T + 0.1 * torch.eye(6, dtype=DT)
    x = torch.randn(6, generator=g, dtype=DT)
    for delta in (1e-4, 0.01, 0.5):
        beta = trust_region_scale(x, F @ x, delta)
        assert beta == pytest.approx(math.sqrt(2 * delta / float(x @ F @ x)), rel=1e-14)
        assert 0.5 * float((beta * x) @ F @ (beta * x)) == pytest.approx(delta, rel=1e-12)


@pytest.mark.parametrize("curv", [0.0, -1.0, float("nan"), float("inf")])
def test_trust_region_scale_nan_for_bad_curvature(curv):
    x = torch.tensor([1.0, 0.0], dtype=DT)
    Fx = torch.tensor([curv, 0.0], dtype=DT)
    assert math.isnan(trust_region_scale(x, Fx, 0.01))


# ---------------------------------------------------------------------------------------------
# The natural gradient.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_natural_gradient_solves_F_and_is_within_90_degrees(kind):
    policy, batch = _setup(kind)
    g = _grad(policy, batch)
    F = fisher_matrix(policy, batch.obs)
    cg = NaturalDirection(damping=0.0, **EXACT_CG).solve(policy, batch, g)
    assert not cg.breakdown and cg.iterations < EXACT_CG["cg_iters"]
    x = cg.x
    assert float((F @ x - g).norm()) <= 1e-5 * float(g.norm())
    assert cg.xFx == pytest.approx(float(x @ F @ x), rel=1e-8)
    assert float(x @ g) > 0
    assert angle_degrees(x, g) < 90.0
    # With damping: (F + λI)⁻¹ g, still an ascent direction.
    cg = NaturalDirection(damping=0.1, **EXACT_CG).solve(policy, batch, g)
    expected = torch.linalg.solve(F + 0.1 * torch.eye(len(g), dtype=DT), g)
    torch.testing.assert_close(cg.x, expected, rtol=1e-8, atol=1e-10)
    assert angle_degrees(cg.x, g) < angle_degrees(x, g) < 90.0


def test_natural_direction_stride_uses_every_kth_state():
    policy, batch = _setup("categorical")
    g = _grad(policy, batch)
    cg = NaturalDirection(damping=0.05, fvp_stride=3, **EXACT_CG).solve(policy, batch, g)
    F3 = fisher_matrix(policy, batch.obs[::3])
    expected = torch.linalg.solve(F3 + 0.05 * torch.eye(len(g), dtype=DT), g)
    torch.testing.assert_close(cg.x, expected, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("kind", KINDS)
def test_npg_stats_grad_angle(kind):
    policy, batch = _setup(kind)
    g = _grad(policy, batch)
    direction = NaturalDirection()
    cg = direction.solve(policy, batch, g)
    stats = NPG(direction=direction).update(policy, batch)
    assert not stats.skipped
    assert stats.grad_angle < 90.0
    assert stats.grad_angle == pytest.approx(angle_degrees(cg.x, g), abs=1e-6)
    assert stats.grad_norm == pytest.approx(float(g.norm()), rel=1e-10)
    assert stats.cg_iterations == cg.iterations
    assert stats.cg_residual == pytest.approx(cg.residual, rel=1e-6)


# ---------------------------------------------------------------------------------------------
# NPG.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", ["analytic", "kl_hessian"])
def test_npg_max_kl_predicted_kl_is_delta(kind, method):
    policy, batch = _setup(kind)
    F = fisher_matrix(policy, batch.obs)
    theta0 = flat_params(policy)
    lam, delta = 0.1, 0.01
    stats = NPG(max_kl=delta, direction=NaturalDirection(damping=lam, method=method)).update(policy, batch)
    assert not stats.skipped
    assert stats.predicted_kl == pytest.approx(delta, rel=1e-10)
    # Independently: ½ xᵀ(F + λI)x = δ for the step actually taken.
    x = flat_params(policy) - theta0
    assert 0.5 * float(x @ (F @ x) + lam * x @ x) == pytest.approx(delta, rel=1e-6)
    assert stats.step_norm == pytest.approx(float(x.norm()), rel=1e-9)
    # The reported measured KL and surrogate are those of the new parameters.
    assert stats.measured_kl == pytest.approx(_mean_kl(policy, theta0, batch), rel=1e-10)
    set_flat_params(policy, theta0)
    L = _surrogate_fn(policy, batch)
    assert stats.surrogate_before == pytest.approx(float(batch.advantages.mean()), rel=1e-12)
    assert stats.surrogate_after == pytest.approx(float(L(theta0 + x)), rel=1e-10)
    assert stats.surrogate_after > stats.surrogate_before


@pytest.mark.parametrize("kind", KINDS)
def test_npg_measured_kl_matches_delta_for_small_delta(kind):
    """Linear policies (well-conditioned F), no damping: KL(β g̃) ≈ ½(βg̃)ᵀF(βg̃) = δ."""
    policy, batch = _setup(kind, hidden=0)
    delta = 1e-4
    stats = NPG(max_kl=delta, direction=NaturalDirection(damping=0.0, **EXACT_CG)).update(policy, batch)
    assert stats.predicted_kl == pytest.approx(delta, rel=1e-10)
    assert stats.measured_kl == pytest.approx(delta, rel=0.05)


@pytest.mark.parametrize("kind", KINDS)
def test_npg_measured_kl_matches_quadratic_model_on_mlp(kind):
    """MLPs have a badly conditioned F; with damping the measured KL of a small step still
    matches the quadratic model ½xᵀFx of the undamped Fisher, and stays below δ."""
    policy, batch = _setup(kind)
    F = fisher_matrix(policy, batch.obs)
    theta0 = flat_params(policy)
    delta = 1e-6
    stats = NPG(max_kl=delta, direction=NaturalDirection(damping=0.01, **EXACT_CG)).update(policy, batch)
    x = flat_params(policy) - theta0
    assert stats.measured_kl == pytest.approx(0.5 * float(x @ F @ x), rel=0.05)
    assert stats.measured_kl < delta


@pytest.mark.parametrize("kind", KINDS)
def test_npg_fixed_step_size_moves_by_step_size_times_natural_gradient(kind):
    policy, batch = _setup(kind)
    theta0 = flat_params(policy)
    g = _grad(policy, batch)
    F = fisher_matrix(policy, batch.obs)
    direction = NaturalDirection(damping=0.1, **EXACT_CG)
    g_nat = torch.linalg.solve(F + 0.1 * torch.eye(len(g), dtype=DT), g)
    cg = direction.solve(policy, batch, g)
    alpha = 0.05
    stats = NPG(step_size=alpha, max_kl=None, direction=direction).update(policy, batch)
    step = flat_params(policy) - theta0
    torch.testing.assert_close(step, alpha * cg.x, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(step, alpha * g_nat, rtol=1e-8, atol=1e-11)
    lam_term = 0.1 * float(step @ step)
    assert stats.predicted_kl == pytest.approx(0.5 * (float(step @ F @ step) + lam_term), rel=1e-8)


# ---------------------------------------------------------------------------------------------
# VPG.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_vpg_sgd_moves_by_lr_times_gradient(kind):
    policy, batch = _setup(kind)
    theta0 = flat_params(policy)
    g = _grad(policy, batch)
    lr = 0.03
    stats = VPG(lr=lr).update(policy, batch)
    step = flat_params(policy) - theta0
    torch.testing.assert_close(step, lr * g, rtol=1e-10, atol=1e-15)
    assert stats.grad_norm == pytest.approx(float(g.norm()), rel=1e-10)
    assert stats.step_norm == pytest.approx(lr * float(g.norm()), rel=1e-10)
    assert stats.measured_kl == pytest.approx(_mean_kl(policy, theta0, batch), rel=1e-10)
    assert math.isnan(stats.predicted_kl)
    # A small ascent step improves the surrogate to first order: ΔL ≈ lr‖g‖².
    gain = stats.surrogate_after - stats.surrogate_before
    assert gain == pytest.approx(lr * float(g @ g), rel=0.05)


def test_vpg_adam_first_step_is_lr_sign_of_gradient():
    policy, batch = _setup("categorical")
    theta0 = flat_params(policy)
    g = _grad(policy, batch)
    rule = VPG(lr=1e-3, optimizer="adam")
    rule.update(policy, batch)
    step = flat_params(policy) - theta0
    # Adam's first step: lr · m̂/(√v̂ + ε) = lr · g/(|g| + ε): ascent, ≈ lr·sign(g).
    expected = 1e-3 * g / (g.abs() + 1e-8)
    torch.testing.assert_close(step, expected, rtol=1e-6, atol=1e-12)
    assert rule.state_dict()["state"]


def test_vpg_rejects_unknown_optimizer():
    with pytest.raises(ValueError):
        VPG(optimizer="rmsprop")


# ---------------------------------------------------------------------------------------------
# TRPO.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_trpo_respects_kl_and_improves_surrogate(kind):
    policy, batch = _setup(kind)
    theta0 = flat_params(policy)
    g = _grad(policy, batch)
    direction = NaturalDirection()
    cg = direction.solve(policy, batch, g)
    delta = 0.01
    stats = TRPO(max_kl=delta, direction=direction).update(policy, batch)
    assert not stats.skipped
    measured = _mean_kl(policy, theta0, batch)
    assert measured == pytest.approx(stats.measured_kl, rel=1e-10)
    assert 0 < measured <= delta
    assert stats.surrogate_after > stats.surrogate_before
    # The step is along g̃, scaled by β·ratioᵏ with ½(βg̃)ᵀ(F+λI)(βg̃) = δ.
    step = flat_params(policy) - theta0
    assert angle_degrees(step, cg.x) < 1e-5
    assert stats.predicted_kl == pytest.approx(delta * 0.8 ** (2 * stats.backtracks), rel=1e-10)


@pytest.mark.parametrize("kind", KINDS)
def test_trpo_backtracks_until_kl_within_budget(kind):
    """Without damping the quadratic model underestimates the KL of the full step of these
    MLPs by orders of magnitude: the line search must shrink it."""
    policy, batch = _setup(kind)
    theta0 = flat_params(policy)
    delta = 1e-3
    rule = TRPO(max_kl=delta, direction=NaturalDirection(damping=0.0, **EXACT_CG), max_backtracks=30)
    g = _grad(policy, batch)
    cg = rule.direction.solve(policy, batch, g)
    fvp = fisher_vector_product(policy, batch.obs)
    full = trust_region_scale(cg.x, fvp(cg.x), delta) * cg.x
    set_flat_params(policy, theta0 + full)
    assert _mean_kl(policy, theta0, batch) > delta  # the full step violates the constraint
    set_flat_params(policy, theta0)
    stats = rule.update(policy, batch)
    assert not stats.skipped
    assert stats.backtracks >= 1
    assert _mean_kl(policy, theta0, batch) <= delta
    assert stats.measured_kl <= delta
    assert stats.surrogate_after > stats.surrogate_before
    torch.testing.assert_close(
        flat_params(policy) - theta0, 0.8**stats.backtracks * full, rtol=1e-9, atol=1e-14
    )
    # ... and the previous, larger candidate was rejected.
    set_flat_params(policy, theta0 + 0.8 ** (stats.backtracks - 1) * full)
    assert _mean_kl(policy, theta0, batch) > delta


def test_trpo_restores_parameters_when_line_search_fails_naturally():
    policy, batch = _setup("categorical")
    theta0 = flat_params(policy)
    rule = TRPO(max_kl=1e-4, direction=NaturalDirection(damping=0.0, **EXACT_CG), max_backtracks=0)
    stats = rule.update(policy, batch)
    assert stats.skipped and stats.skip_reason
    assert stats.backtracks == 1
    _assert_params_finite_and_equal(policy, theta0)
    assert stats.surrogate_after == stats.surrogate_before
    assert stats.step_norm == 0.0


@pytest.mark.parametrize("kind", KINDS)
def test_trpo_restores_parameters_when_no_step_improves(kind, monkeypatch):
    policy, batch = _setup(kind)
    theta0 = flat_params(policy)
    seen = []

    def worse(pol, b, s):
        seen.append(flat_params(pol))
        return s.surr - 1.0, KLs(0.0, 0.0, 0.0)  # within the KL budget, but a worse surrogate

    monkeypatch.setattr(steps, "_evaluate", worse)
    stats = TRPO(max_kl=0.01, max_backtracks=4).update(policy, batch)
    assert stats.skipped
    assert "line search" in stats.skip_reason
    assert stats.backtracks == 5
    assert len(seen) == 5
    assert all(not torch.equal(t, theta0) for t in seen)
    _assert_params_finite_and_equal(policy, theta0)


def test_line_search_always_over_kl_restores_bit_exactly():
    policy, _ = _setup("gaussian")
    theta0 = flat_params(policy)
    g = torch.Generator().manual_seed(3)
    full = torch.randn(theta0.shape, generator=g, dtype=DT)
    tried = []

    def evaluate():
        tried.append(flat_params(policy))
        return 1e9, 1.0  # a huge improvement, but always above the KL budget

    res = backtracking_line_search(
        policy, theta0, full, evaluate, surrogate_old=0.0, max_kl=0.01,
        backtrack_ratio=0.5, max_backtracks=6,
    )  # fmt: skip
    assert not res.accepted
    assert res.backtracks == 7
    assert len(tried) == 7
    for k, t in enumerate(tried):
        torch.testing.assert_close(t, theta0 + 0.5**k * full, rtol=0, atol=0)
    _assert_params_finite_and_equal(policy, theta0)


def test_line_search_accepts_first_qualifying_candidate():
    policy, _ = _setup("bernoulli")
    theta0 = flat_params(policy)
    full = torch.full_like(theta0, 0.1)
    answers = iter([(2.0, 0.5), (float("nan"), 0.0), (0.5, 0.001), (1.5, 0.001), (3.0, 0.0)])
    res = backtracking_line_search(
        policy, theta0, full, lambda: next(answers), surrogate_old=1.0, max_kl=0.01,
        backtrack_ratio=0.8, max_backtracks=10,
    )  # fmt: skip
    # k=0 over the KL budget, k=1 non-finite, k=2 no improvement, k=3 accepted.
    assert res.accepted
    assert (res.backtracks, res.surrogate, res.kl) == (3, 1.5, 0.001)
    assert torch.equal(flat_params(policy), theta0 + 0.8**3 * full)


# ---------------------------------------------------------------------------------------------
# Non-finite and zero gradients.
# ---------------------------------------------------------------------------------------------

RULES = {
    "vpg": lambda: VPG(lr=0.1),
    "vpg_adam": lambda: VPG(lr=0.1, optimizer="adam"),
    "npg": lambda: NPG(max_kl=0.01),
    "npg_fixed": lambda: NPG(step_size=0.1, max_kl=None),
    "trpo": lambda: TRPO(max_kl=0.01),
}


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("kind", KINDS)
def test_nan_advantage_skips_and_leaves_parameters(rule, kind):
    policy, batch = _setup(kind)
    adv = batch.advantages.clone()
    adv[5] = float("nan")
    bad = PolicyBatch(batch.obs, batch.actions, adv)
    theta0 = flat_params(policy)
    stats = RULES[rule]().update(policy, bad)
    assert stats.skipped
    assert "non-finite gradient" in stats.skip_reason
    assert stats.step_norm == 0.0
    _assert_params_finite_and_equal(policy, theta0)


@pytest.mark.parametrize("rule", RULES)
def test_rule_recovers_after_a_non_finite_batch(rule):
    """A skipped NaN batch leaves no trace (e.g. no NaN in Adam's moments): the next good
    batch takes a normal, finite step."""
    policy, batch = _setup("categorical")
    adv = batch.advantages.clone()
    adv[0] = float("nan")
    update = RULES[rule]()
    assert update.update(policy, PolicyBatch(batch.obs, batch.actions, adv)).skipped
    stats = update.update(policy, batch)
    assert not stats.skipped
    assert stats.step_norm > 0
    assert torch.isfinite(flat_params(policy)).all()


@pytest.mark.parametrize("rule", ["npg", "trpo"])
def test_zero_gradient_skips_natural_rules(rule):
    policy, batch = _setup("gaussian")
    zero = PolicyBatch(batch.obs, batch.actions, torch.zeros(B, dtype=DT))
    theta0 = flat_params(policy)
    stats = RULES[rule]().update(policy, zero)
    assert stats.skipped
    assert stats.grad_norm == 0.0
    _assert_params_finite_and_equal(policy, theta0)


def test_successful_steps_report_not_skipped():
    for make in RULES.values():
        policy, batch = _setup("categorical")
        stats = make().update(policy, batch)
        assert not stats.skipped and stats.skip_reason == ""
        assert stats.step_norm > 0
        assert torch.isfinite(flat_params(policy)).all()


def test_old_policy_does_not_move_with_in_place_updates_of_a_state_independent_log_std():
    # The default Gaussian actor outputs log σ as a view of a parameter; π_old must be a copy,
    # or the measured KL (and TRPO's line-search check) would ignore changes of σ.
    from trustpg.core.distributions import detach, kl
    from trustpg.nets.policies import Actor

    torch.manual_seed(0)
    actor = Actor(3, 2, "gaussian", (8,))
    obs = torch.randn(5, 3)
    old = detach(actor(obs))
    with torch.no_grad():
        actor.log_std.add_(0.5)  # in place, as set_flat_params and optimisers update
    assert torch.allclose(old.params[1], torch.zeros(5, 2))
    measured = kl(old, actor(obs)).mean()
    assert measured > 0.1


# ---------------------------------------------------------------------------------------------
# The UpdateRule protocol: what the trainer asks of a rule instead of its class.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [TRPO, NPG], ids=["trpo", "npg"])
def test_with_kl_budget_is_a_copy_with_the_new_delta(make):
    rule = make(max_kl=0.01, direction=NaturalDirection(damping=0.3))
    new = rule.with_kl_budget(0.002)
    assert new is not rule and new.max_kl == 0.002 and rule.max_kl == 0.01
    assert new == dataclasses.replace(rule, max_kl=0.002)  # every other field kept
    # The copy steps to the new budget: NPG's ½xᵀFx is δ exactly, TRPO's measured KL within it.
    policy, batch = _setup("categorical")
    stats = new.update(policy, batch)
    assert stats.predicted_kl == pytest.approx(0.002, rel=1e-9)
    assert stats.measured_kl <= 0.002 + 1e-12


@pytest.mark.parametrize(
    "rule", [VPG(), VPG(optimizer="adam"), NPG(step_size=0.1, max_kl=None)], ids=["sgd", "adam", "npg-fixed"]
)
def test_with_kl_budget_of_a_rule_without_a_budget_is_itself(rule):
    assert rule.with_kl_budget(0.002) is rule


@pytest.mark.parametrize(
    "rule", [TRPO(), NPG(), NPG(max_kl=None), VPG()], ids=["trpo", "npg", "npg-fixed", "vpg-sgd"]
)
def test_stateless_rules_have_an_empty_state_and_ignore_loading_one(rule):
    assert rule.state_dict() == {}
    policy, batch = _setup("categorical")
    rule.update(policy, batch)
    assert rule.state_dict() == {}
    rule.load_state_dict({})


def test_vpg_adam_state_dict_round_trip_continues_bit_exactly():
    """Two Adam steps in one rule equal one step, state_dict → a fresh rule, one more step."""
    policy_a, batch = _setup("gaussian")
    policy_b, _ = _setup("gaussian")
    a = VPG(lr=1e-2, optimizer="adam")
    a.update(policy_a, batch)
    saved = copy.deepcopy(a.state_dict())
    assert saved["state"]  # Adam's moments and step count
    set_flat_params(policy_b, flat_params(policy_a))
    b = VPG(lr=1e-2, optimizer="adam")
    b.load_state_dict(saved)
    assert b.state_dict() == saved  # loaded but not used yet: returned as loaded
    a.update(policy_a, batch)
    b.update(policy_b, batch)
    assert torch.equal(flat_params(policy_a), flat_params(policy_b))
    fresh = VPG(lr=1e-2, optimizer="adam")
    set_flat_params(policy_b, flat_params(policy_a))
    fresh.update(policy_b, batch)  # without the state: a first step, a different one
    a.update(policy_a, batch)
    assert not torch.equal(flat_params(policy_a), flat_params(policy_b))
