"""Masked MultiDiscrete (``MaskedMultiCategorical``) through the checks every distribution gets:
log-probabilities, entropy and KL against torch.distributions, the Fisher three ways and equal to
that of the MultiCategorical on each dimension's valid support, the natural gradient within 90°,
and nothing NaN with one valid action per dimension."""

from __future__ import annotations

import itertools

import torch
import torch.distributions as td
from torch import Tensor, nn
from torch.func import jacrev

from trustpg.core.distributions import Distribution, MultiCategorical, detach, kl
from trustpg.core.fisher import fisher_matrix, fisher_vector_product
from trustpg.core.linalg import angle_degrees, flat_params
from trustpg.core.masked import MaskedMultiCategorical

from ._policies import dist_at, surrogate_and_natural_gradient

DT = torch.float64
NVEC = (2, 3, 4)
N = sum(NVEC)
B = 5
#: Per state, the three dimensions' masks concatenated (each dimension keeps ≥ 1 valid action).
MASK = torch.tensor(
    [[1, 1, 1, 1, 1, 1, 1, 1, 1], [1, 0, 0, 1, 1, 1, 0, 1, 0], [0, 1, 1, 1, 0, 0, 0, 0, 1],
     [1, 1, 0, 0, 1, 1, 1, 0, 0], [0, 1, 1, 0, 0, 0, 1, 1, 1]],
    dtype=torch.bool,
)  # fmt: skip


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _close(a: Tensor, b: Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


def _torch_parts(z: Tensor, mask: Tensor) -> list[td.Categorical]:
    """The independent reference: one torch Categorical per dimension, invalid logits −inf."""
    return [td.Categorical(logits=zd.masked_fill(~md, -torch.inf))
            for zd, md in zip(z.split(NVEC, -1), mask.split(NVEC, -1))]  # fmt: skip


def test_log_prob_entropy_and_kl_match_torch_distributions():
    z_old = 2.0 * torch.randn(B, N, generator=_gen(0), dtype=DT)
    z_new = 2.0 * torch.randn(B, N, generator=_gen(1), dtype=DT)
    old, new = MaskedMultiCategorical(z_old, NVEC, MASK), MaskedMultiCategorical(z_new, NVEC, MASK)
    ref_old, ref_new = _torch_parts(z_old, MASK), _torch_parts(z_new, MASK)
    a = old.sample(_gen(2))
    _close(old.log_prob(a), sum(r.log_prob(a[:, d]) for d, r in enumerate(ref_old)))
    _close(old.entropy(), sum(r.entropy() for r in ref_old))
    _close(kl(old, new), sum(td.kl_divergence(p, q) for p, q in zip(ref_old, ref_new)))
    for d, md in enumerate(MASK.split(NVEC, -1)):  # sampled actions are valid in every dimension
        assert md.gather(1, a[:, d : d + 1]).all()


class MaskedMultiPolicy(nn.Module):
    """obs [B, 3 + N] (features, then the mask bits) → tanh layer → masked MultiDiscrete logits."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Linear(3 + N, 4), nn.Tanh(), nn.Linear(4, N)).double()

    def forward(self, obs: Tensor) -> MaskedMultiCategorical:
        return MaskedMultiCategorical(self.net(obs), NVEC, obs[..., -N:] > 0.5)


class _Restricted(nn.Module):
    """The same parameters; the MultiCategorical of state ``b``'s valid actions only."""

    def __init__(self, policy: MaskedMultiPolicy, valid: Tensor) -> None:
        super().__init__()
        self.net, self.valid = policy.net, valid
        self.nvec = [int(v.sum()) for v in valid.split(NVEC)]

    def forward(self, obs: Tensor) -> Distribution:
        return MultiCategorical(self.net(obs)[..., self.valid], self.nvec)


def _obs(seed: int, mask: Tensor = MASK) -> Tensor:
    feats = torch.randn(mask.shape[0], 3, generator=_gen(seed), dtype=DT)
    return torch.cat([feats, mask.to(DT)], 1)


def test_fisher_three_ways_and_equal_to_the_valid_support():
    policy, obs = MaskedMultiPolicy(3), _obs(4)
    F = fisher_matrix(policy, obs)
    theta = flat_params(policy)
    with torch.no_grad():
        old = detach(policy(obs))
    hess = torch.autograd.functional.hessian(lambda t: kl(old, dist_at(policy, t, obs)).mean(), theta)
    _close(F, hess)
    # E_s Σ_{a valid jointly} π(a|s) ∇log π ∇log πᵀ, enumerating the valid joint actions only.
    rows, acts = [], []
    for b in range(B):
        valid = [m.nonzero().squeeze(-1).tolist() for m in MASK[b].split(NVEC)]
        for joint in itertools.product(*valid):
            rows.append(b)
            acts.append(joint)
    obs_rep, a = obs[rows], torch.tensor(acts)
    scores = jacrev(lambda t: dist_at(policy, t, obs_rep).log_prob(a))(theta)
    with torch.no_grad():
        w = policy(obs_rep).log_prob(a).exp()
    _close(w.reshape(-1).sum(), torch.tensor(float(B), dtype=DT))  # each state's joint sums to 1
    _close(F, (w[:, None] * scores).T @ scores / B)
    for b in range(B):  # a state's Fisher: the MultiCategorical on its valid actions
        _close(
            fisher_matrix(policy, obs[b : b + 1]), fisher_matrix(_Restricted(policy, MASK[b]), obs[b : b + 1])
        )
    v = torch.randn(theta.numel(), generator=_gen(5), dtype=DT)
    _close(fisher_vector_product(policy, obs)(v), F @ v)


def test_natural_gradient_within_90_degrees():
    g, x = surrogate_and_natural_gradient(MaskedMultiPolicy(5), torch.cat([_obs(6)] * 4), seed=7)
    assert float(x @ g) > 0 and angle_degrees(x, g) < 90.0


def test_one_valid_action_per_dimension_gives_no_nan_and_zero_gradients():
    one = torch.zeros(B, N, dtype=torch.bool)
    offsets = [0, *itertools.accumulate(NVEC)][:-1]
    for b in range(B):
        for off, n in zip(offsets, NVEC):
            one[b, off + (b % n)] = True
    z = (50.0 * torch.randn(B, N, generator=_gen(9), dtype=torch.float32)).requires_grad_()
    d = MaskedMultiCategorical(z, NVEC, one)
    other = MaskedMultiCategorical(z.detach() + 3.0 * torch.randn(B, N, generator=_gen(10)), NVEC, one)
    a = d.sample(_gen(11))
    assert torch.equal(a, torch.tensor([[b % n for n in NVEC] for b in range(B)]))
    total = d.log_prob(a).sum() + d.entropy().sum() + kl(d, other).sum()
    assert float(total.detach()) == 0.0
    (g,) = torch.autograd.grad(total, z)
    assert torch.isfinite(g).all() and float(g.abs().max()) == 0.0
    policy = MaskedMultiPolicy(12)
    assert float(fisher_matrix(policy, _obs(13, one)).abs().max()) < 1e-12  # nothing left to move
