"""The Fisher matrix of a policy, dense and matrix-free, against independent computations."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch.func import jacrev

from trustpg.core.distributions import detach, kl
from trustpg.core.fisher import fisher_matrix, fisher_vector_product
from trustpg.core.linalg import flat_params

from ._policies import (
    ACT_DIM,
    KINDS,
    N_ACTIONS,
    ThetaBernoulli,
    dist_at,
    make_obs,
    make_policy,
)

DT = torch.float64
N_STATES = 16


def _close(a, b, rtol=1e-9, atol=1e-11):
    torch.testing.assert_close(a, b, rtol=rtol, atol=atol)


# ---------------------------------------------------------------------------------------------
# The seed's example: Bernoulli with probs θ has F(θ) = 1/θ + 1/(1−θ).
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("theta", "expected"), [(0.1, 11.111111111111111), (0.5, 4.0), (0.9, 11.111111111111111)]
)
def test_bernoulli_probs_fisher_closed_form(theta, expected):
    policy = ThetaBernoulli(theta)
    obs = torch.zeros(4, 1, dtype=DT)
    F = fisher_matrix(policy, obs)
    assert F.shape == (1, 1)
    closed = 1 / theta + 1 / (1 - theta)
    assert float(F) == pytest.approx(closed, rel=1e-12)
    assert float(F) == pytest.approx(expected, rel=1e-9)
    # E[score²] by enumeration: θ·(1/θ)² + (1−θ)·(1/(1−θ))².
    th = policy.theta
    scores = [
        torch.autograd.grad(policy(obs[:1]).log_prob(torch.tensor([[a]], dtype=DT)).sum(), th)[0]
        for a in (0.0, 1.0)
    ]
    enum = theta * float(scores[1]) ** 2 + (1 - theta) * float(scores[0]) ** 2
    assert enum == pytest.approx(closed, rel=1e-9)
    # Both matrix-free products, and damping.
    v = torch.tensor([0.7], dtype=DT)
    for method in ("analytic", "kl_hessian"):
        fvp = fisher_vector_product(policy, obs, method=method)
        assert float(fvp(v)) == pytest.approx(closed * 0.7, rel=1e-9)
        fvp = fisher_vector_product(policy, obs, method=method, damping=0.25)
        assert float(fvp(v)) == pytest.approx((closed + 0.25) * 0.7, rel=1e-9)


# ---------------------------------------------------------------------------------------------
# Three ways on small random MLP policies.
# ---------------------------------------------------------------------------------------------


def _actions_and_weights(kind: str, policy, obs: torch.Tensor):
    """Every action (or quadrature node) for every state, and its weight.

    Returns obs repeated [B·Q, ...], actions [B·Q, ...], weights [B·Q] with Σ_q w = 1 per state.
    """
    b = obs.shape[0]
    with torch.no_grad():
        dist = policy(obs)
    if kind == "categorical":
        acts = torch.arange(N_ACTIONS).repeat(b)  # state-major
        obs_rep = obs.repeat_interleave(N_ACTIONS, 0)
        with torch.no_grad():
            w = policy(obs_rep).log_prob(acts).exp()
    elif kind == "bernoulli":
        combos = torch.tensor(list(itertools.product([0.0, 1.0], repeat=ACT_DIM)), dtype=DT)
        q = combos.shape[0]
        acts = combos.repeat(b, 1)
        obs_rep = obs.repeat_interleave(q, 0)
        with torch.no_grad():
            w = policy(obs_rep).log_prob(acts).exp()
    else:
        # Gauss–Hermite (probabilists'), 5 nodes per dimension: exact for the degree-4
        # polynomials in the action that score products are.
        nodes, weights = np.polynomial.hermite_e.hermegauss(5)
        z1 = torch.tensor(list(itertools.product(nodes, repeat=ACT_DIM)), dtype=DT)  # [Q, A]
        wq = torch.tensor([a * c for a, c in itertools.product(weights, repeat=ACT_DIM)], dtype=DT)
        wq = wq / wq.sum()
        q = z1.shape[0]
        obs_rep = obs.repeat_interleave(q, 0)
        mean = dist.mean.repeat_interleave(q, 0)
        std = dist.std.repeat_interleave(q, 0)
        acts = mean + std * z1.repeat(b, 1)
        w = wq.repeat(b)
    torch.testing.assert_close(w.view(b, -1).sum(1), torch.ones(b, dtype=DT))
    return obs_rep, acts, w


def _score_fisher(kind: str, policy, obs: torch.Tensor) -> torch.Tensor:
    """E_s E_a[∇θ log π(a|s) ∇θ log π(a|s)ᵀ], exact over actions."""
    obs_rep, acts, w = _actions_and_weights(kind, policy, obs)
    theta = flat_params(policy)
    scores = jacrev(lambda t: dist_at(policy, t, obs_rep).log_prob(acts))(theta)  # [B·Q, P]
    return (w[:, None] * scores).T @ scores / obs.shape[0]


def _kl_hessian(policy, obs: torch.Tensor) -> torch.Tensor:
    """∇²θ' mean_s KL(π_θ(·|s) ‖ π_θ'(·|s)) at θ' = θ, by torch.autograd.functional.hessian."""
    theta = flat_params(policy)
    with torch.no_grad():
        old = detach(policy(obs))
    return torch.autograd.functional.hessian(lambda t: kl(old, dist_at(policy, t, obs)).mean(), theta)


@pytest.fixture(params=KINDS)
def setup(request):
    kind = request.param
    policy = make_policy(kind, seed=3)
    obs = make_obs(N_STATES, seed=4)
    return kind, policy, obs, fisher_matrix(policy, obs)


def test_fisher_three_ways_agree(setup):
    kind, policy, obs, F = setup
    n_params = flat_params(policy).numel()
    assert F.shape == (n_params, n_params)
    assert F.dtype == DT
    score = _score_fisher(kind, policy, obs)
    hess = _kl_hessian(policy, obs)
    _close(F, score)
    _close(F, hess)
    # Not trivially equal: F is a non-zero, non-diagonal matrix.
    assert float(F.abs().max()) > 1e-3
    assert float((F - torch.diag(torch.diag(F))).abs().max()) > 1e-4


def test_fisher_symmetric_psd(setup):
    _, _, _, F = setup
    _close(F, F.T, rtol=0, atol=1e-13)
    eig = torch.linalg.eigvalsh(F)
    assert float(eig.min()) >= -1e-10 * float(eig.max())
    assert float(eig.max()) > 0


@pytest.mark.parametrize("method", ["analytic", "kl_hessian"])
def test_fisher_vector_product_matches_dense(setup, method):
    _, policy, obs, F = setup
    g = torch.Generator().manual_seed(9)
    n = F.shape[0]
    fvp = fisher_vector_product(policy, obs, method=method)
    for _ in range(3):
        v = torch.randn(n, generator=g, dtype=DT)
        _close(fvp(v), F @ v)
    # Linear in v.
    v1, v2 = torch.randn(n, generator=g, dtype=DT), torch.randn(n, generator=g, dtype=DT)
    _close(fvp(2.0 * v1 - v2), 2.0 * fvp(v1) - fvp(v2))
    # Damping adds λv exactly.
    lam = 0.37
    damped = fisher_vector_product(policy, obs, method=method, damping=lam)
    _close(damped(v1), F @ v1 + lam * v1)
    _close(damped(v1) - fvp(v1), lam * v1, rtol=1e-9, atol=1e-12)


def test_fisher_vector_product_leaves_parameters_and_grads_alone(setup):
    _, policy, obs, _ = setup
    theta = flat_params(policy)
    v = torch.ones_like(theta)
    for method in ("analytic", "kl_hessian"):
        fisher_vector_product(policy, obs, method=method)(v)
    assert torch.equal(flat_params(policy), theta)
    assert all(p.grad is None for p in policy.parameters())


def test_fisher_is_mean_over_states():
    policy = make_policy("categorical", seed=5)
    obs = make_obs(6, seed=6)
    F = fisher_matrix(policy, obs)
    per_state = torch.stack([fisher_matrix(policy, obs[i : i + 1]) for i in range(6)])
    _close(F, per_state.mean(0))


def test_invalid_method_and_negative_damping_raise():
    policy = make_policy("gaussian", seed=0)
    obs = make_obs(4)
    with pytest.raises(ValueError):
        fisher_vector_product(policy, obs, method="exact")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        fisher_vector_product(policy, obs, damping=-1e-3)
    with pytest.raises(ValueError):
        fisher_vector_product(policy, obs, damping=-1.0, method="kl_hessian")


def test_functorch_reference_fvp_equals_the_default_analytic_fvp_and_fisher_matrix():
    # functorch_fvp (torch.func jvp + vjp) is an independent implementation of Jᵀ M J v; the
    # default analytic product (double-vjp) and the dense matrix must agree with it.
    from trustpg.core.fisher import fisher_matrix, fisher_vector_product, functorch_fvp
    from trustpg.nets.policies import Actor

    torch.manual_seed(0)
    for kind, act_dim in (("gaussian", 2), ("categorical", 3), ("bernoulli", 2)):
        actor = Actor(4, act_dim, kind, (6,)).double()
        obs = torch.randn(9, 4, dtype=torch.float64)
        v = torch.randn(sum(p.numel() for p in actor.parameters()), dtype=torch.float64)
        ref = functorch_fvp(actor, obs, damping=0.05)(v)
        torch.testing.assert_close(fisher_vector_product(actor, obs, damping=0.05)(v), ref)
        torch.testing.assert_close(fisher_matrix(actor, obs) @ v + 0.05 * v, ref)
