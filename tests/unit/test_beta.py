"""The Beta policy (core/beta.py): densities, entropy and KL against torch.distributions, its
sampler, the metric against the Fisher information computed two other ways (numerical
integration and Monte Carlo), and on a small policy: the Fisher three ways and the natural
gradient within 90°."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.distributions as td
from torch import Tensor, nn
from torch.func import jacrev

from trustpg.core.beta import Beta, beta_concentration, gamma_sample
from trustpg.core.distributions import Distribution, detach, kl, missing_members
from trustpg.core.fisher import fisher_matrix, fisher_vector_product
from trustpg.core.linalg import angle_degrees, conjugate_gradient, flat_params

from ._policies import dist_at

DT = torch.float64
B, A = 5, 3
LOW = torch.tensor([-2.0, 0.0, -1.0], dtype=DT)
HIGH = torch.tensor([2.0, 1.0, 3.0], dtype=DT)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape: int, seed: int, scale: float = 1.0) -> Tensor:
    return scale * torch.randn(*shape, generator=_gen(seed), dtype=DT)


def _close(a: Tensor, b: Tensor, rtol: float = 1e-10, atol: float = 1e-12) -> None:
    torch.testing.assert_close(a, b, rtol=rtol, atol=atol)


def _pair(seed: int) -> tuple[Beta, td.Distribution]:
    """Ours and torch's Beta stretched onto [LOW, HIGH] (an AffineTransform of td.Beta)."""
    za, zb = _randn(B, A, seed=seed, scale=2.0), _randn(B, A, seed=seed + 50, scale=2.0)
    ours = Beta(za, zb, LOW, HIGH)
    base = td.Beta(beta_concentration(za), beta_concentration(zb))
    ref = td.Independent(td.TransformedDistribution(base, [td.AffineTransform(LOW, HIGH - LOW)]), 1)
    return ours, ref


def _base(d: Beta) -> td.Beta:
    return td.Beta(d.alpha, d.beta)


def test_concentrations_exceed_one_and_protocol_is_complete():
    d, _ = _pair(0)
    assert (d.alpha > 1).all() and (d.beta > 1).all()
    assert missing_members(d) == [] and isinstance(d, Distribution)


def test_log_prob_matches_torch():
    ours, ref = _pair(0)
    torch.manual_seed(1)
    for a in ref.sample((7,)):
        _close(ours.log_prob(a), ref.log_prob(a))
    assert ours.log_prob(ref.sample()).shape == (B,)


def test_entropy_matches_torch():
    ours, _ = _pair(0)
    # The entropy of a + s·X is H(X) + log s; torch's TransformedDistribution has no entropy.
    _close(ours.entropy(), (_base(ours).entropy() + torch.log(HIGH - LOW)).sum(-1))


def test_kl_matches_torch_kl_divergence_both_directions():
    old, _ = _pair(0)
    new, _ = _pair(1)
    expected = td.kl_divergence(_base(old), _base(new)).sum(-1)
    _close(kl(old, new), expected)
    _close(new.kl_to(old), td.kl_divergence(_base(new), _base(old)).sum(-1))
    assert not torch.allclose(kl(old, new), kl(new, old))
    assert torch.equal(kl(old, old), torch.zeros(B, dtype=DT))
    assert (kl(old, new) > 0).all()
    with pytest.raises(TypeError):
        kl(old, object())  # type: ignore[arg-type]


def test_sample_in_box_seeded_and_moments_match():
    d, _ = _pair(0)
    a1, a2 = d.sample(_gen(3)), d.sample(_gen(3))
    assert torch.equal(a1, a2) and a1.shape == (B, A) and a1.dtype == DT
    assert not torch.equal(a1, d.sample(_gen(4)))
    assert ((a1 > LOW) & (a1 < HIGH)).all() and torch.isfinite(d.log_prob(a1)).all()
    # Mean and variance of 40k draws of one state, within 5 standard errors.
    n = 40_000
    za, zb = d.z_alpha[:1].expand(n, A), d.z_beta[:1].expand(n, A)
    x = Beta(za, zb).sample(_gen(5))
    base = _base(d)
    mean, var = base.mean[0], base.variance[0]
    _close(x.mean(0), mean, rtol=0, atol=float(5 * var.sqrt().max() / math.sqrt(n)))
    _close(x.var(0), var, rtol=0.05, atol=0)


def test_gamma_sampler_moments_and_float32_draws_stay_inside():
    k = torch.tensor([1.0, 1.7, 9.0], dtype=DT).expand(50_000, 3)
    g = gamma_sample(k, _gen(0))
    _close(g.mean(0), k[0], rtol=0.02, atol=0)  # Gamma(k): mean k, variance k
    _close(g.var(0), k[0], rtol=0.05, atol=0)
    # Extreme concentrations in float32: X/(X+Y) would round to 0 or 1; samples stay inside.
    z = torch.tensor([[12.0, -30.0], [-30.0, 12.0]]).repeat(500, 1)
    d = Beta(z[:, :1], z[:, 1:], -1.0, 1.0)
    a = d.sample(_gen(1))
    assert ((a > -1) & (a < 1)).all() and torch.isfinite(d.log_prob(a)).all()


def test_mode_is_the_density_maximum():
    d, _ = _pair(0)
    m = d.mode()
    for eps in (1e-4, -1e-4):
        assert (d.log_prob(m) >= d.log_prob((m + eps).clamp(LOW + 1e-6, HIGH - 1e-6))).all()
    flat = Beta(torch.full((2, 1), -80.0, dtype=DT), torch.full((2, 1), -80.0, dtype=DT), -2.0, 2.0)
    assert torch.equal(flat.mode(), torch.zeros(2, 1, dtype=DT))


def test_log_prob_at_the_bounds_is_finite_with_finite_gradients():
    za = torch.zeros(2, 1, dtype=DT, requires_grad=True)
    d = Beta(za, torch.zeros(2, 1, dtype=DT), -2.0, 2.0)
    lp = d.log_prob(torch.tensor([[-2.0], [2.0]], dtype=DT))
    (g,) = torch.autograd.grad(lp.sum(), za)
    assert torch.isfinite(lp).all() and torch.isfinite(g).all()


# ---------------------------------------------------------------------------------------------
# The metric M(φ) in φ = (z_α, z_β) against the Fisher information E[s sᵀ], s = ∇φ log p(a|φ).
# ---------------------------------------------------------------------------------------------


def _logit_grid(q: int = 301, t_max: float = 50.0) -> tuple[Tensor, Tensor]:
    """Nodes x = σ(t) on a uniform t-grid over [−t_max, t_max] and trapezoid weights σ'(t)Δt for
    ∫₀¹ f(x) dx = ∫ f(σ(t)) σ'(t) dt: the integrand is smooth and decays exponentially in t, where
    the trapezoid rule converges geometrically (error ~e^{−2π²/Δt}, Trefethen & Weideman 2014)."""
    t = torch.linspace(-t_max, t_max, q, dtype=DT)
    x = torch.sigmoid(t)
    w = x * (1 - x) * (t[1] - t[0])
    return x, w


def _scores(za: Tensor, zb: Tensor, actions: Tensor) -> Tensor:
    """s = ∇(z_α, z_β) log p(a) by autograd, shape [N, 2A]."""
    leaves = [za.detach().clone().requires_grad_(True), zb.detach().clone().requires_grad_(True)]
    d = Beta(*leaves, LOW, HIGH)
    grads = torch.autograd.grad(d.log_prob(actions).sum(), leaves)
    return torch.cat(grads, 1)


def _metric_matrix(d: Beta) -> Tensor:
    """M(φ) as a dense [B, 2A, 2A] matrix, column by column from ``metric``."""
    b, a = d.z_alpha.shape
    cols = []
    for k in range(2 * a):
        e = torch.zeros(b, 2 * a, dtype=DT)
        e[:, k] = 1.0
        cols.append(torch.cat(d.metric((e[:, :a], e[:, a:])), 1))
    return torch.stack(cols, -1)


def test_metric_equals_fisher_by_numerical_integration():
    d, _ = _pair(0)
    x, w = _logit_grid()
    q = x.shape[0]
    mats = _metric_matrix(d)
    for i in range(B):  # each dimension separately: the dims are independent, M is block diagonal
        za, zb = d.z_alpha[i : i + 1].expand(q, A), d.z_beta[i : i + 1].expand(q, A)
        acts = LOW + (HIGH - LOW) * x[:, None].expand(q, A)  # node j in every dimension at once
        s = _scores(za, zb, acts)  # [Q, 2A]: dim j's score depends only on its own x
        p = td.Beta(d.alpha[i], d.beta[i]).log_prob(x[:, None].expand(q, A)).exp()  # [Q, A]
        integrated = torch.zeros(2 * A, 2 * A, dtype=DT)  # zero across dims: independent, mean-0 scores
        for j in range(A):
            idx = [j, A + j]
            sj = s[:, idx]
            integrated[np.ix_(idx, idx)] = (w * p[:, j])[:, None].mul(sj).T @ sj
        _close(mats[i], integrated, rtol=1e-8, atol=1e-10)
    # Closed form in (α, β) chained through α = 1 + softplus(z): D I D.
    tri = lambda v: torch.polygamma(1, v)  # noqa: E731
    a, b = d.alpha[0, 0], d.beta[0, 0]
    info = torch.stack(
        [torch.stack([tri(a) - tri(a + b), -tri(a + b)]), torch.stack([-tri(a + b), tri(b) - tri(a + b)])]
    )
    jac = torch.diag(torch.stack([torch.sigmoid(d.z_alpha[0, 0]), torch.sigmoid(d.z_beta[0, 0])]))
    _close(mats[0][np.ix_([0, A], [0, A])], jac @ info @ jac)


def test_metric_monte_carlo():
    """E[s sᵀ] by Monte Carlo over 200k sampled actions of one state (tolerance 0.05 of the
    largest entry, ≈ 10 standard errors)."""
    d, _ = _pair(2)
    n = 200_000
    za, zb = d.z_alpha[:1].expand(n, A), d.z_beta[:1].expand(n, A)
    acts = Beta(za, zb, LOW, HIGH).sample(_gen(11))
    s = _scores(za, zb, acts)
    mc = s.T @ s / n
    closed = _metric_matrix(d)[0]
    _close(mc, closed, rtol=0, atol=float(0.05 * closed.abs().max()))


# ---------------------------------------------------------------------------------------------
# A small Beta policy: the Fisher three ways, the natural gradient within 90°.
# ---------------------------------------------------------------------------------------------


class BetaPolicy(nn.Module):
    """obs [B, 3] → tanh layer → (z_α, z_β) for ``act_dim`` dimensions on [−2, 2]."""

    def __init__(self, act_dim: int = 1, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.act_dim = act_dim
        self.net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2 * act_dim)).double()

    def forward(self, obs: Tensor) -> Beta:
        out = self.net(obs)
        return Beta(out[..., : self.act_dim], out[..., self.act_dim :], -2.0, 2.0)


def _obs(n: int, seed: int) -> Tensor:
    return torch.randn(n, 3, generator=_gen(seed), dtype=DT)


def test_policy_fisher_three_ways():
    """fisher_matrix (Jᵀ M J with the analytic metric) = ∇² mean KL (autograd Hessian) =
    E_s ∫ p(a|s) ∇θ log π ∇θ log πᵀ da (numerical integration over the action)."""
    policy, obs = BetaPolicy(act_dim=1, seed=3), _obs(6, 4)
    F = fisher_matrix(policy, obs)
    theta = flat_params(policy)
    with torch.no_grad():
        old = detach(policy(obs))
    hess = torch.autograd.functional.hessian(lambda t: kl(old, dist_at(policy, t, obs)).mean(), theta)
    x, w = _logit_grid()
    q = x.shape[0]
    obs_rep = obs.repeat_interleave(q, 0)
    acts = (-2.0 + 4.0 * x).repeat(obs.shape[0])[:, None]
    scores = jacrev(lambda t: dist_at(policy, t, obs_rep).log_prob(acts))(theta)  # [B·Q, P]
    with torch.no_grad():
        dens = policy(obs_rep).log_prob(acts).exp() * 4.0  # density of x = density of a · (high − low)
    weights = dens * w.repeat(obs.shape[0])
    score_fisher = (weights[:, None] * scores).T @ scores / obs.shape[0]
    _close(F, hess, rtol=1e-9, atol=1e-11)
    _close(F, score_fisher, rtol=1e-7, atol=1e-9)
    assert float((F - torch.diag(torch.diag(F))).abs().max()) > 1e-4
    assert torch.linalg.eigvalsh(F).min() > -1e-12


def test_natural_gradient_is_within_90_degrees():
    """x = F⁻¹g by conjugate gradient on the matrix-free product (as the rules compute it) solves
    the dense system, and is an ascent direction of the surrogate: angle(x, g) < 90°."""
    policy = BetaPolicy(act_dim=2, seed=5)
    obs = _obs(32, 6)
    with torch.no_grad():
        actions = policy(obs).sample(_gen(7))
        logp_old = policy(obs).log_prob(actions)
    adv = torch.randn(32, generator=_gen(8), dtype=DT)
    theta = flat_params(policy)

    def surrogate(t: Tensor) -> Tensor:
        return (torch.exp(dist_at(policy, t, obs).log_prob(actions) - logp_old) * adv).mean()

    g = torch.func.grad(surrogate)(theta)
    F = fisher_matrix(policy, obs)
    fvp = fisher_vector_product(policy, obs)
    cg = conjugate_gradient(fvp, g, iters=200, tol=1e-24)
    assert float((F @ cg.x - g).norm()) <= 1e-5 * float(g.norm())
    _close(fvp(cg.x), F @ cg.x, rtol=1e-8, atol=1e-10)
    assert float(cg.x @ g) > 0 and angle_degrees(cg.x, g) < 90.0


def test_numpy_sampler_draws_the_same_beta_actions_as_torch():
    """The NumPy sampler (accel/fast_actor.py) mirrors Beta.sample on the same generator draws:
    the same actions up to float rounding of the network output, the generator left in the same
    state (the same number of rejection rounds)."""
    from trustpg.accel.fast_actor import NumpyActor
    from trustpg.nets.policies import Actor

    torch.manual_seed(0)
    actor = Actor(4, 3, "beta", (16, 16), low=LOW.numpy(), high=HIGH.numpy())
    with torch.no_grad():  # concentrations far from 1: a peaked, non-trivial distribution
        actor.net[-1].weight.mul_(100)
    spec = actor.mlp_spec()
    assert spec is not None and spec.head == "beta"
    fast = NumpyActor(spec)
    g1, g2 = _gen(5), _gen(5)
    for _ in range(3):
        obs = torch.randn(64, 4)
        with torch.no_grad():
            ref = actor(obs).sample(g1).numpy()
        got = fast.sample(obs.numpy(), g2)
        assert got.dtype == ref.dtype == np.float32 and got.shape == (64, 3)
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
        assert ((got > LOW.numpy()) & (got < HIGH.numpy())).all()
    assert torch.equal(g1.get_state(), g2.get_state())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_kl_at_extreme_concentrations_matches_torch_and_is_not_negative(dtype):
    """z from −30 (α → 1, where the Fisher vanishes) to 30 (α ≈ 31: log B and ψ of large and
    nearby arguments cancel): the KL against torch's in float64 and, in float32 (what training
    uses), within 5e-5 of it and never below −5e-5."""
    grid = torch.linspace(-30, 30, 13, dtype=torch.float64)
    za, zb = torch.meshgrid(grid, grid, indexing="ij")
    za, zb = za.reshape(-1, 1), zb.reshape(-1, 1)
    shifted = (za + 0.5, zb - 0.25)  # a nearby policy
    low, high = torch.zeros(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64)
    old64, new64 = Beta(za, zb, low, high), Beta(*shifted, low, high)
    ref = td.kl_divergence(_base(old64), _base(new64)).sum(-1)
    _close(kl(old64, new64), ref, rtol=1e-8, atol=1e-10)
    old, new = (Beta(a.to(dtype), b.to(dtype), low.to(dtype), high.to(dtype)) for a, b in ((za, zb), shifted))
    ours = kl(old, new).double()
    assert torch.isfinite(ours).all() and (ours >= -5e-5).all()
    if dtype == torch.float64:
        _close(ours, ref, rtol=1e-8, atol=1e-10)
    else:  # KLs up to 0.035 here; float32's error measured at 1.1e-5
        torch.testing.assert_close(ours, ref, rtol=0, atol=5e-5)
