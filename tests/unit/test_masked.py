"""Masked categoricals (core/masked.py): invalid actions get probability 0 in sampling,
log-probabilities, entropy, KL and the Fisher — each checked against the categorical on the valid
support and against torch.distributions — and nothing is NaN with all but one action masked."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.distributions as td
from torch import Tensor, nn
from torch.func import jacrev

from trustpg.core.distributions import (
    Categorical,
    Distribution,
    MultiCategorical,
    detach,
    kl,
    missing_members,
)
from trustpg.core.fisher import fisher_matrix, fisher_vector_product
from trustpg.core.linalg import angle_degrees, flat_params
from trustpg.core.masked import MaskedCategorical, MaskedMultiCategorical

from ._policies import dist_at, surrogate_and_natural_gradient

DT = torch.float64
B, K = 6, 5


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _close(a: Tensor, b: Tensor, rtol: float = 1e-10, atol: float = 1e-12) -> None:
    torch.testing.assert_close(a, b, rtol=rtol, atol=atol)


def _logits(seed: int, k: int = K) -> Tensor:
    return 2.0 * torch.randn(B, k, generator=_gen(seed), dtype=DT)


MASK = torch.tensor(
    [[1, 1, 1, 1, 1], [1, 0, 1, 0, 1], [0, 0, 0, 1, 0], [1, 1, 0, 0, 0], [0, 1, 1, 1, 1], [0, 0, 1, 0, 1]],
    dtype=torch.bool,
)


def _torch_ref(z: Tensor, mask: Tensor) -> td.Categorical:
    return td.Categorical(logits=z.masked_fill(~mask, -torch.inf))


def test_protocol_complete_and_invalid_actions_have_probability_zero():
    d = MaskedCategorical(_logits(0), MASK)
    assert missing_members(d) == [] and isinstance(d, Distribution)
    assert torch.equal(d.probs[~MASK], torch.zeros(int((~MASK).sum()), dtype=DT))
    _close(d.probs.sum(-1), torch.ones(B, dtype=DT))
    _close(d.probs, _torch_ref(_logits(0), MASK).probs)


def test_log_prob_entropy_kl_match_torch_with_minus_infinity_logits():
    old, new = MaskedCategorical(_logits(0), MASK), MaskedCategorical(_logits(1), MASK)
    ref_old, ref_new = _torch_ref(_logits(0), MASK), _torch_ref(_logits(1), MASK)
    for k in range(K):
        a = torch.full((B,), k)
        ok = MASK[:, k]
        _close(old.log_prob(a)[ok], ref_old.log_prob(a)[ok])
    _close(old.entropy(), ref_old.entropy())
    _close(kl(old, new), td.kl_divergence(ref_old, ref_new))
    _close(kl(new, old), td.kl_divergence(ref_new, ref_old))
    assert torch.equal(kl(old, old), torch.zeros(B, dtype=DT))
    with pytest.raises(TypeError):
        kl(old, Categorical(logits=_logits(1)))


def test_kl_entropy_and_metric_equal_the_categorical_on_the_valid_support():
    z_old, z_new, u = _logits(0), _logits(1), torch.randn(B, K, generator=_gen(2), dtype=DT)
    old, new = MaskedCategorical(z_old, MASK), MaskedCategorical(z_new, MASK)
    (mu,) = old.metric((u,))
    for b in range(B):
        v = MASK[b]
        sub_old, sub_new = Categorical(logits=z_old[b : b + 1, v]), Categorical(logits=z_new[b : b + 1, v])
        _close(kl(old, new)[b], kl(sub_old, sub_new)[0])
        _close(old.entropy()[b], sub_old.entropy()[0])
        _close(mu[b, v], sub_old.metric((u[b : b + 1, v],))[0][0])
        assert torch.equal(mu[b, ~v], torch.zeros(int((~v).sum()), dtype=DT))
        # And the metric is the Fisher E[s sᵀ] of the masked distribution, by enumeration.
        zb = z_old[b : b + 1].clone().requires_grad_(True)
        d = MaskedCategorical(zb, MASK[b : b + 1])
        fisher = torch.zeros(K, K, dtype=DT)
        for k in torch.nonzero(v).flatten():
            (s,) = torch.autograd.grad(d.log_prob(k.view(1)).sum(), zb, retain_graph=True)
            fisher += d.probs[0, k].detach() * s[0, :, None] * s[0, None, :]
        _close(fisher @ u[b], mu[b])


def test_sampling_never_picks_an_invalid_action():
    z = torch.zeros(20_000, K, dtype=DT)
    mask = torch.tensor([1, 0, 1, 0, 1], dtype=torch.bool).expand(20_000, K)
    d = MaskedCategorical(z, mask)
    a = d.sample(_gen(3))
    freq = torch.bincount(a, minlength=K).to(DT) / 20_000
    assert freq[1] == 0 and freq[3] == 0
    _close(freq[[0, 2, 4]], torch.full((3,), 1 / 3, dtype=DT), rtol=0, atol=0.02)
    assert torch.equal(d.sample(_gen(4)), d.sample(_gen(4)))
    assert MASK.gather(1, MaskedCategorical(_logits(5), MASK).mode()[:, None]).all()


def test_all_but_one_masked_gives_no_nan_and_zero_gradients():
    z = _logits(0).requires_grad_(True)
    mask = torch.zeros(B, K, dtype=torch.bool)
    mask[torch.arange(B), torch.arange(B) % K] = True
    d = MaskedCategorical(z, mask)
    only = torch.arange(B) % K
    new = MaskedCategorical(_logits(1), mask)
    for value in (d.log_prob(only), d.entropy(), kl(d, new), kl(detach(d), d)):
        assert torch.equal(value.detach(), torch.zeros(B, dtype=DT))
        (g,) = torch.autograd.grad(value.sum(), z, retain_graph=True)
        assert torch.isfinite(g).all() and torch.equal(g, torch.zeros_like(g))
    assert torch.equal(d.sample(_gen(0)), only) and torch.equal(d.mode(), only)
    (m,) = d.metric((torch.randn(B, K, generator=_gen(1), dtype=DT),))
    assert torch.equal(m, torch.zeros_like(m))


def test_a_state_with_no_valid_action_is_treated_as_unmasked():
    z = _logits(0)
    none = torch.zeros(B, K, dtype=torch.bool)
    d, plain = MaskedCategorical(z, none), Categorical(logits=z)
    _close(d.probs, plain.probs)
    _close(d.entropy(), plain.entropy())
    assert torch.isfinite(kl(d, MaskedCategorical(_logits(1), none))).all()


def test_float32_masked_values_stay_finite():
    z = _logits(0).float().requires_grad_(True)
    d = MaskedCategorical(z, MASK)
    total = d.entropy().sum() + kl(detach(d), d).sum() + d.log_prob(d.sample(_gen(0))).sum()
    (g,) = torch.autograd.grad(total, z)
    assert torch.isfinite(total) and torch.isfinite(g).all()


def test_masked_multicategorical_is_the_sum_of_masked_parts():
    nvec = (2, 3, 4)
    z_old = 2.0 * torch.randn(B, 9, generator=_gen(0), dtype=DT)
    z_new = 2.0 * torch.randn(B, 9, generator=_gen(1), dtype=DT)
    mask = torch.rand(B, 9, generator=_gen(2)) > 0.3
    old, new = MaskedMultiCategorical(z_old, nvec, mask), MaskedMultiCategorical(z_new, nvec, mask)
    assert missing_members(old) == []
    parts = list(zip(z_old.split(nvec, -1), z_new.split(nvec, -1), mask.split(nvec, -1)))
    _close(kl(old, new), sum(kl(MaskedCategorical(a, m), MaskedCategorical(b, m)) for a, b, m in parts))
    _close(old.entropy(), sum(MaskedCategorical(a, m).entropy() for a, _, m in parts))
    a = old.sample(_gen(3))
    assert a.shape == (B, 3)
    for d, (_, _, m) in enumerate(parts):
        assert m.gather(1, a[:, d : d + 1]).all() | ~m.any(-1, keepdim=True).all()
    # Unmasked, it is the MultiCategorical.
    full = MaskedMultiCategorical(z_old, nvec, torch.ones(B, 9, dtype=torch.bool))
    plain = MultiCategorical(z_old, nvec)
    _close(full.log_prob(a), plain.log_prob(a))
    _close(kl(full, MaskedMultiCategorical(z_new, nvec, torch.ones(B, 9, dtype=torch.bool))),
           kl(plain, MultiCategorical(z_new, nvec)))  # fmt: skip
    with pytest.raises(TypeError):
        kl(old, MaskedMultiCategorical(z_new[:, :5], (2, 3), mask[:, :5]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_unmasked_multicategorical_gives_the_bits_of_multicategorical(dtype):
    """Both sum their parts in one place (core/blocks.py), in one order: with every action valid
    the masked one is the MultiCategorical to the last bit, also with D ≥ 5 dimensions (where a
    sum of stacked parts, ``torch.stack(…).sum(-1)``, rounds differently from Python's sum)."""
    nvec = (2, 3, 4, 2, 3, 5, 2)
    n = sum(nvec)
    z_old = 3.0 * torch.randn(64, n, generator=_gen(0), dtype=dtype)
    z_new = 3.0 * torch.randn(64, n, generator=_gen(1), dtype=dtype)
    ones = torch.ones(64, n, dtype=torch.bool)
    full, full_new = MaskedMultiCategorical(z_old, nvec, ones), MaskedMultiCategorical(z_new, nvec, ones)
    plain, plain_new = MultiCategorical(z_old, nvec), MultiCategorical(z_new, nvec)
    a = plain.sample(_gen(3))
    assert torch.equal(full.log_prob(a), plain.log_prob(a))
    assert torch.equal(full.entropy(), plain.entropy())
    assert torch.equal(kl(full, full_new), kl(plain, plain_new))
    assert torch.equal(full.sample(_gen(4)), plain.sample(_gen(4)))
    assert torch.equal(full.mode(), plain.mode())
    u = torch.randn(64, n, generator=_gen(5), dtype=dtype)
    assert torch.equal(full.metric((u,))[0], plain.metric((u,))[0])


# ---------------------------------------------------------------------------------------------
# A masked policy: the mask travels in the observation's last K entries.
# ---------------------------------------------------------------------------------------------


class MaskedPolicy(nn.Module):
    """obs [B, 3 + K] (features, then the mask bits) → tanh layer → masked logits."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Linear(3 + K, 4), nn.Tanh(), nn.Linear(4, K)).double()

    def forward(self, obs: Tensor) -> MaskedCategorical:
        return MaskedCategorical(self.net(obs), obs[..., -K:] > 0.5)


def _obs(seed: int) -> Tensor:
    feats = torch.randn(B, 3, generator=_gen(seed), dtype=DT)
    return torch.cat([feats, MASK.to(DT)], 1)


def test_policy_fisher_three_ways_and_equal_to_the_valid_support():
    policy, obs = MaskedPolicy(3), _obs(4)
    F = fisher_matrix(policy, obs)
    theta = flat_params(policy)
    with torch.no_grad():
        old = detach(policy(obs))
    hess = torch.autograd.functional.hessian(lambda t: kl(old, dist_at(policy, t, obs)).mean(), theta)
    # E_s Σ_{a valid} π(a|s) s sᵀ by enumeration over the valid actions only.
    pairs = [(b, k) for b, k in itertools.product(range(B), range(K)) if MASK[b, k]]
    obs_rep = obs[[b for b, _ in pairs]]
    acts = torch.tensor([k for _, k in pairs])
    scores = jacrev(lambda t: dist_at(policy, t, obs_rep).log_prob(acts))(theta)
    with torch.no_grad():
        w = policy(obs_rep).log_prob(acts).exp()
    score = (w[:, None] * scores).T @ scores / B
    _close(F, hess, rtol=1e-9, atol=1e-11)
    _close(F, score, rtol=1e-9, atol=1e-11)
    # A state's Fisher is that of the categorical on its valid support (logits restricted to it).
    for b in range(B):
        v = MASK[b]

        def sub_policy(o: Tensor, v: Tensor = v) -> Categorical:
            return Categorical(logits=policy.net(o)[..., v])

        wrapped = _Wrap(policy, sub_policy)
        _close(fisher_matrix(policy, obs[b : b + 1]), fisher_matrix(wrapped, obs[b : b + 1]))
    v = torch.randn(theta.numel(), generator=_gen(5), dtype=DT)
    _close(fisher_vector_product(policy, obs)(v), F @ v, rtol=1e-9, atol=1e-11)


class _Wrap(nn.Module):
    """The same parameters as ``policy``, another distribution built from them."""

    def __init__(self, policy: nn.Module, fn) -> None:
        super().__init__()
        self.net, self.fn = policy.net, fn

    def forward(self, obs: Tensor) -> Distribution:
        return self.fn(obs)


def test_masked_natural_gradient_within_90_degrees():
    g, x = surrogate_and_natural_gradient(MaskedPolicy(5), torch.cat([_obs(6)] * 4), seed=7)
    assert float(x @ g) > 0 and angle_degrees(x, g) < 90.0
