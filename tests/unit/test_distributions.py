"""Action distributions: densities, entropies and KL against torch.distributions, sampling,
and the metric M(φ) against the Fisher information of φ computed independently."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.distributions as td
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from trustpg.core.distributions import (
    PROTOCOL_MEMBERS,
    Bernoulli,
    Categorical,
    DiagGaussian,
    Distribution,
    MultiCategorical,
    detach,
    kl,
    missing_members,
)

DT = torch.float64
B, A, K = 5, 3, 4


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(*shape, generator=_gen(seed), dtype=DT)


def _assert_close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-10, atol: float = 1e-12):
    torch.testing.assert_close(a, b, rtol=rtol, atol=atol)


# ---------------------------------------------------------------------------------------------
# Pairs (ours, torch's) of the same distribution, and a second one of the same family for KL.
# ---------------------------------------------------------------------------------------------


def _bernoulli_logits(seed: int):
    z = _randn(B, A, seed=seed, scale=2.0)
    return Bernoulli(logits=z), td.Independent(td.Bernoulli(logits=z), 1)


def _bernoulli_probs(seed: int):
    p = torch.sigmoid(_randn(B, A, seed=seed, scale=2.0))
    return Bernoulli(probs=p), td.Independent(td.Bernoulli(probs=p), 1)


def _categorical_logits(seed: int):
    z = _randn(B, K, seed=seed, scale=2.0)
    return Categorical(logits=z), td.Categorical(logits=z)


def _categorical_probs(seed: int):
    p = torch.softmax(_randn(B, K, seed=seed, scale=2.0), -1)
    return Categorical(probs=p), td.Categorical(probs=p)


def _gaussian(seed: int):
    mean = _randn(B, A, seed=seed, scale=2.0)
    log_std = _randn(B, A, seed=seed + 100, scale=0.5)
    return DiagGaussian(mean, log_std), td.Independent(td.Normal(mean, log_std.exp()), 1)


FAMILIES = {
    "bernoulli_logits": _bernoulli_logits,
    "bernoulli_probs": _bernoulli_probs,
    "categorical_logits": _categorical_logits,
    "categorical_probs": _categorical_probs,
    "gaussian": _gaussian,
}


def _actions(ref: td.Distribution, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    return ref.sample((7,))  # [7, B, ...]: several actions per state


@pytest.mark.parametrize("family", FAMILIES)
def test_log_prob_matches_torch(family):
    ours, ref = FAMILIES[family](0)
    acts = _actions(ref, 1)
    for a in acts:
        _assert_close(ours.log_prob(a), ref.log_prob(a))
    assert ours.log_prob(acts[0]).shape == (B,)


@pytest.mark.parametrize("family", FAMILIES)
def test_entropy_matches_torch(family):
    ours, ref = FAMILIES[family](0)
    _assert_close(ours.entropy(), ref.entropy())
    assert ours.entropy().shape == (B,)


@pytest.mark.parametrize("family", FAMILIES)
def test_kl_matches_torch_kl_divergence(family):
    old, ref_old = FAMILIES[family](0)
    new, ref_new = FAMILIES[family](1)
    expected = td.kl_divergence(ref_old, ref_new)  # Independent sums over action dims
    got = kl(old, new)
    assert got.shape == (B,)
    _assert_close(got, expected)
    # KL is not symmetric: kl(new, old) is a different number, and also matches.
    _assert_close(kl(new, old), td.kl_divergence(ref_new, ref_old))
    assert not torch.allclose(got, kl(new, old))


@pytest.mark.parametrize("family", FAMILIES)
def test_kl_self_is_zero_and_kl_positive(family):
    p, _ = FAMILIES[family](0)
    q, _ = FAMILIES[family](1)
    assert torch.equal(kl(p, p), torch.zeros(B, dtype=DT))
    assert (kl(p, q) > 0).all()


def test_kl_mixed_families_raise_type_error():
    bern, _ = _bernoulli_logits(0)
    cat, _ = _categorical_logits(0)
    gauss, _ = _gaussian(0)
    for a, b in [(bern, cat), (cat, gauss), (gauss, bern), (cat, bern)]:
        with pytest.raises(TypeError):
            kl(a, b)


def _multicategorical(seed: int):
    nvec = (2, 3, 4)
    z = _randn(B, sum(nvec), seed=seed, scale=2.0)
    parts = [td.Categorical(logits=b) for b in z.split(nvec, dim=-1)]
    return MultiCategorical(z, nvec), parts


@pytest.mark.parametrize("family", [*FAMILIES, "multicategorical"])
def test_kl_to_matches_torch_and_kl_delegates_to_it(family):
    """Every built-in family carries KL(self ‖ other) itself (the Distribution protocol's kl_to);
    the module-level kl(old, new) is old.kl_to(new), bit for bit, in the one direction."""
    make = _multicategorical if family == "multicategorical" else FAMILIES[family]
    (old, ref_old), (new, ref_new) = make(0), make(1)
    if family == "multicategorical":
        expected = sum(td.kl_divergence(a, b) for a, b in zip(ref_old, ref_new))
    else:
        expected = td.kl_divergence(ref_old, ref_new)
    got = old.kl_to(new)
    assert got.shape == (B,)
    _assert_close(got, expected)
    assert torch.equal(kl(old, new), got)
    assert torch.equal(kl(new, old), new.kl_to(old)) and not torch.allclose(got, new.kl_to(old))


def test_every_built_in_family_provides_the_whole_protocol():
    """PROTOCOL_MEMBERS is the Distribution protocol's member list, and each family has them all."""
    declared = {n for n in vars(Distribution) if not n.startswith("_")}
    assert set(PROTOCOL_MEMBERS) == declared
    for make in [*FAMILIES.values(), _multicategorical]:
        dist, _ = make(0)
        assert missing_members(dist) == [] and isinstance(dist, Distribution)


def test_missing_members_names_what_a_family_lacks():
    class NoKL:
        params = ()

        def with_params(self, params): ...
        def log_prob(self, actions): ...
        def entropy(self): ...
        def mode(self): ...
        def sample(self, generator=None): ...
        def metric(self, tangents): ...

    class NotCallable(NoKL):
        kl_to = 3

    assert missing_members(NoKL()) == ["kl_to"]
    assert missing_members(NotCallable()) == ["kl_to"]
    assert missing_members(object()) == list(PROTOCOL_MEMBERS)
    with pytest.raises(TypeError, match=r"NoKL has no kl_to method"):
        kl(NoKL(), NoKL())  # type: ignore[arg-type]


@pytest.mark.parametrize("cls", [Bernoulli, Categorical])
def test_both_or_neither_params_raise_value_error(cls):
    x = torch.full((2, 3), 0.3, dtype=DT)
    with pytest.raises(ValueError):
        cls(probs=x, logits=x)
    with pytest.raises(ValueError):
        cls()


def test_mode():
    p = torch.tensor([[0.2, 0.7, 0.9], [0.6, 0.1, 0.4]], dtype=DT)
    assert torch.equal(Bernoulli(probs=p).mode(), torch.tensor([[0, 1, 1], [1, 0, 0]], dtype=DT))
    logits = torch.logit(p)
    assert torch.equal(Bernoulli(logits=logits).mode(), torch.tensor([[0, 1, 1], [1, 0, 0]], dtype=DT))
    z = torch.tensor([[0.1, 2.0, -1.0, 0.5], [3.0, 2.9, 0.0, -5.0]], dtype=DT)
    assert torch.equal(Categorical(logits=z).mode(), torch.tensor([1, 0]))
    assert torch.equal(Categorical(probs=torch.softmax(z, -1)).mode(), torch.tensor([1, 0]))
    mean = _randn(B, A, seed=3)
    assert torch.equal(DiagGaussian(mean, torch.zeros(A, dtype=DT)).mode(), mean)


@pytest.mark.parametrize("family", FAMILIES)
def test_sample_shapes_support_and_seeded_reproducibility(family):
    ours, _ = FAMILIES[family](0)
    a1 = ours.sample(generator=_gen(123))
    a2 = ours.sample(generator=_gen(123))
    assert torch.equal(a1, a2)
    others = [ours.sample(generator=_gen(s)) for s in range(124, 134)]
    assert any(not torch.equal(a1, o) for o in others)
    if family.startswith("categorical"):
        assert a1.shape == (B,)
        assert ((a1 >= 0) & (a1 < K)).all()
    else:
        assert a1.shape == (B, A)
        assert a1.dtype == DT
    if family.startswith("bernoulli"):
        assert ((a1 == 0) | (a1 == 1)).all()
    # Samples are in the support: finite log-probability.
    assert torch.isfinite(ours.log_prob(a1)).all()


N_MC = 40_000


def test_categorical_sample_frequencies():
    p = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=DT)
    for dist in (Categorical(probs=p.expand(N_MC, 4)), Categorical(logits=p.log().expand(N_MC, 4))):
        a = dist.sample(generator=_gen(5))
        freq = torch.bincount(a, minlength=4).to(DT) / N_MC
        # 5 standard errors of a frequency: sqrt(p(1-p)/N) ≤ 0.0025.
        _assert_close(freq, p, rtol=0, atol=0.0125)


def test_bernoulli_sample_frequencies():
    p = torch.tensor([0.05, 0.5, 0.8], dtype=DT)
    for dist in (
        Bernoulli(probs=p.expand(N_MC, 3)),
        Bernoulli(logits=torch.logit(p).expand(N_MC, 3)),
    ):
        freq = dist.sample(generator=_gen(6)).mean(0)
        _assert_close(freq, p, rtol=0, atol=0.0125)


def test_gaussian_sample_moments():
    mean = torch.tensor([-1.0, 0.0, 3.0], dtype=DT)
    log_std = torch.tensor([-1.0, 0.0, 0.7], dtype=DT)
    a = DiagGaussian(mean.expand(N_MC, 3), log_std).sample(generator=_gen(7))
    std = log_std.exp()
    # 5 standard errors of the sample mean and sample std.
    _assert_close(a.mean(0), mean, rtol=0, atol=float(5 * std.max() / math.sqrt(N_MC)))
    _assert_close(a.std(0), std, rtol=0.02, atol=0)


# ---------------------------------------------------------------------------------------------
# metric(u) = M(φ) u with M the Fisher information of the distribution's own parameters φ.
# ---------------------------------------------------------------------------------------------


def _fisher_by_enumeration(make, params, actions, probs_of):
    """M_b = Σ_a p_b(a) s_b(a) s_b(a)ᵀ with s = ∇φ log p(a|φ) by autograd, shape [B, D, D]."""
    leaves = [p.detach().clone().requires_grad_(True) for p in params]
    dist = make(*leaves)
    mats = 0.0
    for a, w in zip(actions, probs_of(dist, actions), strict=True):
        grads = torch.autograd.grad(dist.log_prob(a).sum(), leaves, retain_graph=True)
        s = torch.cat([g.reshape(g.shape[0], -1) for g in grads], dim=1)  # [B, D]
        mats = mats + w.detach()[:, None, None] * s[:, :, None] * s[:, None, :]
    return mats


def _apply(mats: torch.Tensor, tangents: tuple[torch.Tensor, ...]) -> torch.Tensor:
    u = torch.cat([t.reshape(t.shape[0], -1) for t in tangents], dim=1)
    return torch.einsum("bij,bj->bi", mats, u)


def _flat(ts: tuple[torch.Tensor, ...]) -> torch.Tensor:
    return torch.cat([t.reshape(t.shape[0], -1) for t in ts], dim=1)


def _enum_probs(dist, actions):
    return [dist.log_prob(a).exp() for a in actions]


@pytest.mark.parametrize("param", ["probs", "logits"])
def test_bernoulli_metric_is_fisher_by_enumeration(param):
    z = _randn(B, A, seed=0, scale=1.5)
    phi = torch.sigmoid(z) if param == "probs" else z
    make = (lambda x: Bernoulli(probs=x)) if param == "probs" else (lambda x: Bernoulli(logits=x))
    actions = [torch.tensor(bits, dtype=DT).expand(B, A) for bits in itertools.product([0.0, 1.0], repeat=A)]
    mats = _fisher_by_enumeration(make, (phi,), actions, _enum_probs)
    u = (_randn(B, A, seed=1),)
    _assert_close(_flat(make(phi).metric(u)), _apply(mats, u))
    # And the closed forms: 1/(θ(1−θ)) for probs, θ(1−θ) for logits.
    th = torch.sigmoid(z)
    diag = 1 / (th * (1 - th)) if param == "probs" else th * (1 - th)
    _assert_close(mats, torch.diag_embed(diag), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("param", ["probs", "logits"])
def test_categorical_metric_is_fisher_by_enumeration(param):
    z = _randn(B, K, seed=0, scale=1.5)
    phi = torch.softmax(z, -1) if param == "probs" else z
    make = (lambda x: Categorical(probs=x)) if param == "probs" else (lambda x: Categorical(logits=x))
    actions = [torch.full((B,), k, dtype=torch.long) for k in range(K)]
    mats = _fisher_by_enumeration(make, (phi,), actions, _enum_probs)
    u = (_randn(B, K, seed=1),)
    _assert_close(_flat(make(phi).metric(u)), _apply(mats, u))
    p = torch.softmax(z, -1)
    closed = (
        torch.diag_embed(1 / p) if param == "probs" else (torch.diag_embed(p) - p[:, :, None] * p[:, None, :])
    )
    _assert_close(mats, closed, rtol=1e-9, atol=1e-12)


def _gaussian_params(seed: int = 0):
    mean = _randn(B, 2, seed=seed, scale=2.0)
    log_std = _randn(B, 2, seed=seed + 1, scale=0.5)
    return mean, log_std


def _gaussian_closed_form(log_std: torch.Tensor) -> torch.Tensor:
    """Fisher in (mean, log σ): diag(1/σ², 2)."""
    return torch.diag_embed(torch.cat([torch.exp(-2 * log_std), torch.full_like(log_std, 2.0)], 1))


def test_gaussian_metric_is_fisher_by_gauss_hermite_quadrature():
    """Scores are polynomials of degree ≤ 2 in the action, so 5-point Gauss–Hermite
    quadrature per dimension gives E[s sᵀ] exactly."""
    mean, log_std = _gaussian_params()
    nodes, weights = np.polynomial.hermite_e.hermegauss(5)
    weights = weights / weights.sum()
    z = torch.tensor(nodes, dtype=DT)
    w = torch.tensor(weights, dtype=DT)
    actions, ws = [], []
    for i, j in itertools.product(range(5), repeat=2):
        zz = torch.stack([z[i], z[j]]).expand(B, 2)
        actions.append(mean + log_std.exp() * zz)
        ws.append((w[i] * w[j]).expand(B))
    mats = _fisher_by_enumeration(
        lambda m, s: DiagGaussian(m, s), (mean, log_std), actions, lambda _d, _a: ws
    )
    _assert_close(mats, _gaussian_closed_form(log_std), rtol=1e-9, atol=1e-10)
    u = (_randn(B, 2, seed=5), _randn(B, 2, seed=6))
    _assert_close(_flat(DiagGaussian(mean, log_std).metric(u)), _apply(mats, u))


def test_gaussian_metric_monte_carlo():
    """E[s sᵀ] by Monte Carlo over sampled actions (loose: 200k samples, tolerance 0.05
    relative to the largest entry of each block ≈ 10 standard errors)."""
    mean, log_std = _gaussian_params()
    n = 200_000
    m = mean[:1].expand(n, 2)
    s = log_std[:1].expand(n, 2)
    leaves = [m.detach().clone().requires_grad_(True), s.detach().clone().requires_grad_(True)]
    dist = DiagGaussian(*leaves)
    a = dist.sample(generator=_gen(11)).detach()
    grads = torch.autograd.grad(dist.log_prob(a).sum(), leaves)
    score = torch.cat(grads, 1)  # [n, 4]
    mc = score.T @ score / n
    closed = _gaussian_closed_form(log_std[:1])[0]
    scale = torch.diag(closed).max()
    _assert_close(mc, closed, rtol=0, atol=float(0.05 * scale))


def test_detach_keeps_values_and_drops_gradient():
    z = _randn(B, K, seed=0).requires_grad_(True)
    d = detach(Categorical(logits=z))
    assert isinstance(d, Categorical)
    assert not d.params[0].requires_grad
    assert torch.equal(d.params[0], z.detach())
    mean = _randn(B, A, seed=1).requires_grad_(True)
    log_std = torch.zeros(A, dtype=DT, requires_grad=True)
    g = detach(DiagGaussian(mean, log_std))
    assert not any(p.requires_grad for p in g.params)


# ---------------------------------------------------------------------------------------------
# Property tests.
# ---------------------------------------------------------------------------------------------

_vals = arrays(np.float64, (3, 4), elements=st.floats(-6, 6, allow_nan=False))
_log_stds = arrays(np.float64, (3, 4), elements=st.floats(-3, 2, allow_nan=False))


@settings(max_examples=40, deadline=None)
@given(z1=_vals, z2=_vals, kind=st.sampled_from(["categorical", "bernoulli"]))
def test_property_discrete_kl_nonnegative_zero_on_self(z1, z2, kind):
    cls = Categorical if kind == "categorical" else Bernoulli
    p, q = cls(logits=torch.from_numpy(z1)), cls(logits=torch.from_numpy(z2))
    assert torch.equal(kl(p, p), torch.zeros(3, dtype=DT))
    assert (kl(p, q) >= -1e-12).all()
    ref = (
        td.kl_divergence(
            td.Categorical(logits=torch.from_numpy(z1)), td.Categorical(logits=torch.from_numpy(z2))
        )
        if kind == "categorical"
        else td.kl_divergence(
            td.Bernoulli(logits=torch.from_numpy(z1)), td.Bernoulli(logits=torch.from_numpy(z2))
        ).sum(-1)
    )
    _assert_close(kl(p, q), ref, rtol=1e-7, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(m1=_vals, m2=_vals, s1=_log_stds, s2=_log_stds)
def test_property_gaussian_kl_nonnegative_zero_on_self(m1, m2, s1, s2):
    p = DiagGaussian(torch.from_numpy(m1), torch.from_numpy(s1))
    q = DiagGaussian(torch.from_numpy(m2), torch.from_numpy(s2))
    assert torch.equal(kl(p, p), torch.zeros(3, dtype=DT))
    assert (kl(p, q) >= -1e-12).all()
    ref = td.kl_divergence(
        td.Independent(td.Normal(torch.from_numpy(m1), torch.from_numpy(s1).exp()), 1),
        td.Independent(td.Normal(torch.from_numpy(m2), torch.from_numpy(s2).exp()), 1),
    )
    _assert_close(kl(p, q), ref, rtol=1e-9, atol=1e-9)
