"""A distribution family defined outside trustpg (Laplace) works end to end: the Distribution
protocol carries everything TRPO needs (``metric`` for the Fisher, ``kl_to`` for the trust
region), and a family missing a member is refused when the agent is built, not at an update."""

from __future__ import annotations

import math

import pytest
import torch
import torch.distributions as td
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from trustpg import TRPO
from trustpg.core.distributions import Distribution, Params, kl
from trustpg.core.fisher import fisher_matrix
from trustpg.core.linalg import flat_params

DT = torch.float64
SMALL = dict(num_envs=2, steps_per_env=64, progress=False, tensorboard=False, eval_episodes=0)


class LaplaceNoKL:
    """Independent Laplace(μ, b) per action dimension, parameterised by (loc μ, log-scale log b);
    everything of the protocol but ``kl_to``."""

    def __init__(self, loc: Tensor, log_scale: Tensor) -> None:
        self.loc = loc
        self.log_scale = log_scale.expand_as(loc)
        self.scale = self.log_scale.exp()

    @property
    def params(self) -> Params:
        return (self.loc, self.log_scale)

    def with_params(self, params: Params) -> Distribution:
        return type(self)(*params)

    def log_prob(self, actions: Tensor) -> Tensor:
        return (-math.log(2.0) - self.log_scale - (actions - self.loc).abs() / self.scale).sum(-1)

    def entropy(self) -> Tensor:
        return (1.0 + math.log(2.0) + self.log_scale).sum(-1)

    def mode(self) -> Tensor:
        return self.loc

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        u = torch.rand(self.loc.shape, generator=generator, dtype=self.loc.dtype) - 0.5
        return self.loc - self.scale * u.sign() * torch.log1p(-2.0 * u.abs())  # inverse CDF

    def metric(self, tangents: Params) -> Params:
        """Fisher information of (μ, log b): diag(1/b², 1), the blocks orthogonal."""
        u_loc, u_log_scale = tangents
        return (u_loc / self.scale.pow(2), u_log_scale)


class Laplace(LaplaceNoKL):
    def kl_to(self, other: Distribution) -> Tensor:
        """KL(L(μ1,b1) ‖ L(μ2,b2)) = log(b2/b1) + |μ1−μ2|/b2 + (b1/b2)·exp(−|μ1−μ2|/b1) − 1."""
        if not isinstance(other, Laplace):
            raise TypeError(f"Laplace.kl_to needs a Laplace, got {type(other).__name__}")
        d = (self.loc - other.loc).abs()
        b1, b2 = self.scale, other.scale
        return (other.log_scale - self.log_scale + d / b2 + (b1 / b2) * torch.exp(-d / b1) - 1.0).sum(-1)


class LaplacePolicy(nn.Module):
    """Linear location, state-independent log-scale; returns ``family`` (Laplace by default)."""

    def __init__(self, obs_dim: int, act_dim: int, family: type = Laplace) -> None:
        super().__init__()
        self.loc = nn.Linear(obs_dim, act_dim)
        self.log_scale = nn.Parameter(torch.full((act_dim,), -0.5))
        self.family = family

    def forward(self, obs: Tensor) -> Distribution:
        return self.family(self.loc(obs), self.log_scale)


def _pair(seed: int, batch: int = 6, dim: int = 3) -> tuple[Laplace, td.Distribution]:
    g = torch.Generator().manual_seed(seed)
    loc = 2.0 * torch.randn(batch, dim, generator=g, dtype=DT)
    log_scale = 0.7 * torch.randn(batch, dim, generator=g, dtype=DT)
    return Laplace(loc, log_scale), td.Independent(td.Laplace(loc, log_scale.exp()), 1)


def test_laplace_kl_to_matches_torch_kl_divergence():
    (p, ref_p), (q, ref_q) = _pair(0), _pair(1)
    assert isinstance(p, Distribution)
    torch.testing.assert_close(p.kl_to(q), td.kl_divergence(ref_p, ref_q), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(q.kl_to(p), td.kl_divergence(ref_q, ref_p), rtol=1e-12, atol=1e-12)
    assert torch.equal(kl(p, q), p.kl_to(q))  # the library's kl(old, new) is old.kl_to(new)
    assert torch.equal(p.kl_to(p), torch.zeros(6, dtype=DT))


def test_laplace_log_prob_entropy_and_sampler_match_torch():
    p, ref = _pair(2)
    x = ref.sample((5,))
    torch.testing.assert_close(p.log_prob(x), ref.log_prob(x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(p.entropy(), ref.entropy(), rtol=1e-12, atol=1e-12)
    draws = torch.stack([p.sample(torch.Generator().manual_seed(s)) for s in range(4000)])
    torch.testing.assert_close(draws.median(0).values, p.loc, rtol=0, atol=0.1 * float(p.scale.max()))
    torch.testing.assert_close((draws - p.loc).abs().mean(0), p.scale, rtol=0.08, atol=0)  # E|x−μ| = b


def test_laplace_metric_is_the_fisher_of_loc_and_log_scale():
    """M = diag(1/b², 1) against the Monte-Carlo E[s sᵀ] of the per-sample score s = ∇φ log p(a|φ)
    (autograd through log_prob), and against KL's second-order expansion KL ≈ ½ εᵀMε."""
    p, _ = _pair(3, batch=2, dim=2)
    n = 200_000
    g = torch.Generator().manual_seed(0)
    loc = p.loc.expand(n, 2, 2).clone().requires_grad_()
    log_scale = p.log_scale.expand(n, 2, 2).clone().requires_grad_()
    with torch.no_grad():
        a = Laplace(p.loc.expand(n, 2, 2), p.log_scale.expand(n, 2, 2)).sample(g)
    s_loc, s_ls = torch.autograd.grad(Laplace(loc, log_scale).log_prob(a).sum(), (loc, log_scale))
    ones = torch.ones_like(p.loc)
    m_loc, m_ls = p.metric((ones, ones))
    torch.testing.assert_close(s_loc.pow(2).mean(0), m_loc, rtol=0.03, atol=0)
    torch.testing.assert_close(s_ls.pow(2).mean(0), m_ls, rtol=0.05, atol=0)
    assert (s_loc * s_ls).mean(0).abs().max() < 0.05 * float(p.scale.pow(-1).max())  # orthogonal
    eps = 1e-4 * torch.randn(2, 2, 2, generator=g, dtype=DT)
    near = p.with_params((p.loc + eps[0], p.log_scale + eps[1]))
    m_eps = p.metric((eps[0], eps[1]))
    quad = 0.5 * ((eps[0] * m_eps[0]).sum(-1) + (eps[1] * m_eps[1]).sum(-1))
    torch.testing.assert_close(p.kl_to(near), quad, rtol=1e-3, atol=0)


def test_fisher_matrix_of_a_laplace_policy_matches_monte_carlo():
    """The library's analytic F = E_s[Jᵀ M J] (built on ``metric``) against E[∇θ log π ∇θ log πᵀ].

    (fvp_method="kl_hessian" would not do for this family: it differentiates ``kl_to`` twice by
    autograd, and |μ1−μ2| has no autograd second derivative at μ1 = μ2, so the loc block of that
    F is 0. The default analytic FVP uses ``metric`` and is exact.)"""
    torch.manual_seed(0)
    policy = LaplacePolicy(3, 2).double()
    obs = torch.randn(4, 3, dtype=DT)
    F = fisher_matrix(policy, obs)
    reps = 50_000
    obs_rep = obs.repeat(reps, 1)
    with torch.no_grad():
        actions = policy(obs_rep).sample(torch.Generator().manual_seed(1))
    params = {k: v.detach() for k, v in policy.named_parameters()}

    def logp(ps: dict[str, Tensor], o: Tensor, a: Tensor) -> Tensor:
        return functional_call(policy, ps, (o[None],)).log_prob(a[None])[0]

    scores = vmap(grad(logp), in_dims=(None, 0, 0))(params, obs_rep, actions)
    S = torch.cat([scores[k].reshape(len(obs_rep), -1) for k in params], dim=1)
    F_mc = S.T @ S / len(obs_rep)
    assert F.shape == (policy.loc.weight.numel() + 4, policy.loc.weight.numel() + 4)
    torch.testing.assert_close(F_mc, F, rtol=0, atol=0.03 * float(F.abs().max()))


def test_trpo_trains_a_laplace_policy_within_the_kl_budget():
    max_kl = 0.01
    policy = LaplacePolicy(3, 1)  # Pendulum-v1: 3 observations, 1 action in [-2, 2]
    theta0 = flat_params(policy).clone()
    rows: list[dict] = []
    agent = TRPO("Pendulum-v1", policy=policy, seed=0, max_kl=max_kl, **SMALL)
    agent.learn(4 * 128, callback=rows.append)
    assert len(rows) == 4
    accepted = [r for r in rows if not r["skipped"]]
    assert accepted, [r["skip_reason"] for r in rows]
    for r in accepted:
        assert 0.0 < r["measured_kl"] <= max_kl + 1e-9
        assert r["predicted_kl"] <= max_kl + 1e-9
    theta = flat_params(policy)
    assert torch.isfinite(theta).all() and not torch.equal(theta, theta0)
    assert agent.predict(torch.zeros(3).numpy()).shape == (1,)


def test_a_family_without_kl_to_is_refused_when_the_agent_is_built():
    with pytest.raises(TypeError) as err:
        TRPO("Pendulum-v1", policy=LaplacePolicy(3, 1, LaplaceNoKL), **SMALL)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.endswith("LaplacePolicy returned LaplaceNoKL, which lacks kl_to"), msg
