"""MultiCategorical (gymnasium MultiDiscrete actions) against a product of torch.distributions
Categoricals, its metric against the Fisher information by enumerating every joint action, and
the policy Fisher computed three ways."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.distributions as td
from torch import nn

from trustpg.core.distributions import Categorical, MultiCategorical, detach, kl
from trustpg.core.fisher import fisher_matrix, fisher_vector_product

DT = torch.float64
B = 5
NVEC = (2, 3, 4)


def _logits(seed: int) -> torch.Tensor:
    return 2.0 * torch.randn(B, sum(NVEC), generator=torch.Generator().manual_seed(seed), dtype=DT)


def _refs(z: torch.Tensor) -> list[td.Categorical]:
    return [td.Categorical(logits=part) for part in z.split(NVEC, -1)]


def _all_actions() -> list[torch.Tensor]:
    return [torch.tensor(a).expand(B, len(NVEC)) for a in itertools.product(*map(range, NVEC))]


def test_log_prob_entropy_kl_match_product_of_torch_categoricals():
    z1, z2 = _logits(0), _logits(1)
    p, q = MultiCategorical(z1, NVEC), MultiCategorical(z2, NVEC)
    r1, r2 = _refs(z1), _refs(z2)
    for a in _all_actions()[::5]:
        expected = sum(r.log_prob(a[:, d]) for d, r in enumerate(r1))
        torch.testing.assert_close(p.log_prob(a), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(p.entropy(), sum(r.entropy() for r in r1), rtol=1e-12, atol=1e-12)
    expected_kl = sum(td.kl_divergence(a, b) for a, b in zip(r1, r2))
    torch.testing.assert_close(kl(p, q), expected_kl, rtol=1e-12, atol=1e-12)
    assert kl(p, q).shape == (B,)
    assert not torch.allclose(kl(p, q), kl(q, p))
    assert torch.equal(kl(p, p), torch.zeros(B, dtype=DT))


def test_probabilities_of_all_joint_actions_sum_to_one():
    p = MultiCategorical(_logits(2), NVEC)
    total = sum(p.log_prob(a).exp() for a in _all_actions())
    torch.testing.assert_close(total, torch.ones(B, dtype=DT))


def test_mode_sample_and_with_params():
    z = _logits(3)
    p = MultiCategorical(z, NVEC)
    assert torch.equal(p.mode(), torch.stack([part.argmax(-1) for part in z.split(NVEC, -1)], -1))
    a1 = p.sample(torch.Generator().manual_seed(7))
    assert a1.shape == (B, len(NVEC)) and a1.dtype == torch.long
    assert torch.equal(a1, p.sample(torch.Generator().manual_seed(7)))
    assert all(((a1[:, d] >= 0) & (a1[:, d] < n)).all() for d, n in enumerate(NVEC))
    q = p.with_params((z + 1.0,))  # a constant shift of the logits is the same distribution
    assert isinstance(q, MultiCategorical) and q.nvec == NVEC
    torch.testing.assert_close(kl(p, q), torch.zeros(B, dtype=DT), rtol=0, atol=1e-12)
    assert not detach(MultiCategorical(z.clone().requires_grad_(True), NVEC)).params[0].requires_grad


def test_sample_marginal_frequencies():
    n = 40_000
    probs = torch.tensor([0.1, 0.2, 0.7, 0.5, 0.5], dtype=DT)
    p = MultiCategorical(probs.log().expand(n, 5), (3, 2))
    a = p.sample(torch.Generator().manual_seed(11))
    torch.testing.assert_close(
        torch.bincount(a[:, 0], minlength=3).to(DT) / n, probs[:3], atol=0.0125, rtol=0
    )
    torch.testing.assert_close(a[:, 1].to(DT).mean(), torch.tensor(0.5, dtype=DT), atol=0.0125, rtol=0)


def test_metric_is_fisher_by_enumerating_joint_actions():
    z = _logits(4).requires_grad_(True)
    p = MultiCategorical(z, NVEC)
    mats = 0.0
    for a in _all_actions():
        logp = p.log_prob(a)
        (s,) = torch.autograd.grad(logp.sum(), z, retain_graph=True)
        mats = mats + logp.exp().detach()[:, None, None] * s[:, :, None] * s[:, None, :]
    u = torch.randn(B, sum(NVEC), generator=torch.Generator().manual_seed(5), dtype=DT)
    (got,) = p.metric((u,))
    torch.testing.assert_close(got, torch.einsum("bij,bj->bi", mats, u), rtol=1e-10, atol=1e-12)


def test_invalid_nvec_and_mixed_kl_raise():
    with pytest.raises(ValueError, match="sum"):
        MultiCategorical(_logits(0), (2, 3))
    with pytest.raises(TypeError):
        kl(MultiCategorical(_logits(0), NVEC), MultiCategorical(_logits(0), (3, 2, 4)))
    with pytest.raises(TypeError):
        kl(MultiCategorical(_logits(0), NVEC), Categorical(logits=_logits(0)))


class _Policy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, sum(NVEC))).to(DT)

    def forward(self, obs: torch.Tensor) -> MultiCategorical:
        return MultiCategorical(self.net(obs), NVEC)


def test_policy_fisher_three_ways_agree():
    torch.manual_seed(0)
    policy = _Policy()
    obs = torch.randn(6, 3, dtype=DT)
    dense = fisher_matrix(policy, obs)
    v = torch.randn(dense.shape[0], dtype=DT)
    for method in ("analytic", "kl_hessian"):
        fvp = fisher_vector_product(policy, obs, method=method)
        torch.testing.assert_close(fvp(v), dense @ v, rtol=1e-8, atol=1e-10)
