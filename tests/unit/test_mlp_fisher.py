"""The hand-written Fisher-vector product of the default MLP Actor (trustpg.accel.mlp_fisher) against
the dense Fisher matrix, the KL-Hessian product and the torch.func reference, and when it is used."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trustpg.accel import mlp_fisher
from trustpg.core import fisher
from trustpg.core.fisher import fisher_matrix, functorch_fvp
from trustpg.core.fisher import fisher_vector_product as core_fisher_vector_product
from trustpg.core.linalg import flat_params
from trustpg.nets.policies import Actor

from ._policies import make_obs, make_policy

DT = torch.float64
KINDS = ("categorical", "multicategorical", "bernoulli", "gaussian")
ACTIVATIONS = ("tanh", "relu", "elu")


def fisher_vector_product(policy: nn.Module, obs: torch.Tensor, **kw):
    """The product the trainer uses: core's FVP with the MLP actor's fast path passed in."""
    return core_fisher_vector_product(policy, obs, fast=mlp_fisher.fast_fvp, **kw)


DAMPING = 0.13


def _actor(kind: str, activation: str = "tanh", hidden: tuple[int, ...] = (5, 4), seed: int = 0) -> Actor:
    """A float64 Actor on 3-D observations with parameters far from their (near-zero) init, so
    that every bias, ReLU/ELU kink side and the log σ matter."""
    torch.manual_seed(seed)
    nvec = (2, 3) if kind == "multicategorical" else ()
    actor = Actor(3, 5 if nvec else 3, kind, hidden, activation, log_std_init=-0.4, nvec=nvec).to(DT)
    with torch.no_grad():
        for p in actor.parameters():
            p.add_(0.5 * torch.randn_like(p))
    return actor


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts of the fast path and of the generic (double-vjp) analytic path."""
    counts = {"fast": 0, "fallback": 0}
    fast, fallback = mlp_fisher.actor_fvp, fisher._analytic_fvp

    def spy_fast(*args, **kwargs):
        counts["fast"] += 1
        return fast(*args, **kwargs)

    def spy_fallback(*args, **kwargs):
        counts["fallback"] += 1
        return fallback(*args, **kwargs)

    monkeypatch.setattr(mlp_fisher, "actor_fvp", spy_fast)
    monkeypatch.setattr(fisher, "_analytic_fvp", spy_fallback)
    return counts


def _check_against_references(policy: nn.Module, obs: torch.Tensor, n_vectors: int = 3) -> None:
    F = fisher_matrix(policy, obs)
    n = F.shape[0]
    fast = fisher_vector_product(policy, obs, damping=DAMPING)
    klh = fisher_vector_product(policy, obs, damping=DAMPING, method="kl_hessian")
    ref = functorch_fvp(policy, obs, damping=DAMPING)
    g = torch.Generator().manual_seed(7)
    for _ in range(n_vectors):
        v = torch.randn(n, generator=g, dtype=DT)
        out = fast(v)
        assert out.shape == (n,) and out.dtype == DT
        torch.testing.assert_close(out, F @ v + DAMPING * v, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(out, klh(v), rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(out, ref(v), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("kind", KINDS)
def test_fast_product_equals_dense_kl_hessian_and_functorch(kind, activation, calls):
    actor = _actor(kind, activation)
    obs = make_obs(11, seed=2)
    _check_against_references(actor, obs)
    assert calls == {"fast": 1, "fallback": 0}  # kl_hessian and functorch_fvp do not dispatch here
    # The batch really straddles the kink for ReLU and ELU (both derivative branches are tested).
    with torch.no_grad():
        z = actor.net[0](obs)
    assert bool((z > 0).any()) and bool((z < 0).any())


@pytest.mark.parametrize("hidden", [(), (6,), (4, 5, 3)])
def test_fast_product_any_depth(hidden, calls):
    actor = _actor("gaussian", "elu", hidden=hidden, seed=1)
    _check_against_references(actor, make_obs(9, seed=3), n_vectors=2)
    assert calls["fast"] == 1 and calls["fallback"] == 0


def test_fast_product_elu_alpha_and_activation_before_the_first_layer(calls):
    # A hand-edited net: an activation on the observation (no θ-dependence) and ELU with α ≠ 1.
    actor = _actor("categorical", "elu")
    actor.net = nn.Sequential(nn.Tanh(), *actor.net)
    actor.net[2].alpha = 0.4
    _check_against_references(actor, make_obs(10, seed=5), n_vectors=2)
    assert calls["fast"] == 1 and calls["fallback"] == 0


def test_gaussian_log_std_block_is_two_times_identity_and_parameter_order():
    # Module.parameters() yields log σ before the net's weights: θ = (log σ, W₁, b₁, ...).
    actor = _actor("gaussian")
    assert next(iter(actor.parameters())) is actor.log_std
    fvp = fisher_vector_product(actor, make_obs(8))
    v = torch.zeros(flat_params(actor).numel(), dtype=DT)
    v[:3] = torch.tensor([1.0, -2.0, 0.5], dtype=DT)
    expected = torch.zeros_like(v)
    expected[:3] = 2.0 * v[:3]  # M = 2 per log σ, shared by every state; orthogonal to the mean
    torch.testing.assert_close(fvp(v), expected, rtol=1e-12, atol=1e-14)


def test_float32_benchmark_shape_agrees_with_kl_hessian(calls):
    torch.manual_seed(0)
    actor = Actor(11, 3, "gaussian", (64, 64))
    obs = torch.randn(512, 11)
    v = torch.randn(flat_params(actor).numel())
    fast = fisher_vector_product(actor, obs, damping=0.1)(v)
    klh = fisher_vector_product(actor, obs, damping=0.1, method="kl_hessian")(v)
    torch.testing.assert_close(fast, klh, rtol=1e-4, atol=1e-6)
    assert calls["fast"] == 1


def test_fast_product_leaves_parameters_and_grads_alone_and_uses_setup_parameters():
    actor = _actor("gaussian", "relu")
    obs = make_obs(7)
    theta = flat_params(actor)
    v = torch.ones_like(theta)
    fvp = fisher_vector_product(actor, obs)
    before = fvp(v)
    assert torch.equal(flat_params(actor), theta)
    assert all(p.grad is None for p in actor.parameters())
    with torch.no_grad():  # a later in-place update (a line search) does not change F
        for p in actor.parameters():
            p.mul_(2.0)
    torch.testing.assert_close(fvp(v), before, rtol=0, atol=0)
    assert fvp(v) is not fvp(v)  # a fresh tensor per call (CG keeps several)


class _SubActor(Actor):
    pass


def test_fallback_for_custom_policies_and_unsupported_actors(calls):
    custom = make_policy("gaussian", seed=2)  # a custom nn.Module returning DiagGaussian
    obs = make_obs(6)
    assert not mlp_fisher.supports(custom, obs)
    _check_against_references(custom, obs, n_vectors=1)
    assert calls == {"fast": 0, "fallback": 1}

    sub = _SubActor(3, 2, "gaussian", (4,)).to(DT)  # a subclass may override forward
    normed = _actor("bernoulli")
    normed.net = nn.Sequential(normed.net[0], nn.LayerNorm(5).to(DT), *normed.net[1:])
    for policy in (sub, normed):
        assert not mlp_fisher.supports(policy, obs)
        _check_against_references(policy, obs, n_vectors=1)
    assert calls == {"fast": 0, "fallback": 3}
    assert not mlp_fisher.supports(_actor("gaussian"), obs[None])  # obs must be [B, obs_dim]


def test_failures_raise_clear_errors():
    actor = _actor("gaussian")
    obs = make_obs(5)
    n = flat_params(actor).numel()
    with pytest.raises(ValueError, match="damping"):
        fisher_vector_product(actor, obs, damping=-1e-3)
    for method in ("analytic", "kl_hessian"):
        fvp = fisher_vector_product(actor, obs, method=method)
        for bad in (torch.zeros(n - 1, dtype=DT), torch.zeros(n + 1, dtype=DT), torch.zeros(1, n, dtype=DT)):
            with pytest.raises(ValueError, match=rf"shape \({n},\)"):
                fvp(bad)
    custom = fisher_vector_product(make_policy("categorical"), obs)  # the fallback checks too
    with pytest.raises(ValueError, match="flat vector"):
        custom(torch.zeros(3, dtype=DT))
