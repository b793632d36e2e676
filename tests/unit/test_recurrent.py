"""Recurrent actor and critic (issue 21 item 1): packed sequences, episode resets, and the same
checks as every policy — the Fisher three ways against the seed's definition, the natural gradient
within 90°, KL against torch.distributions — all on whole sequences (backprop through time)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from trustpg.config.train_config import TrainConfig
from trustpg.core import rules
from trustpg.core.distributions import kl
from trustpg.core.fisher import fisher_matrix, fisher_quadratic, fisher_vector_product, functorch_fvp
from trustpg.core.linalg import angle_degrees, conjugate_gradient, flat_grad, flat_params
from trustpg.core.line_search import KLs
from trustpg.core.rules import TRPO
from trustpg.core.update import PolicyBatch
from trustpg.nets.recurrent import RecurrentActor, RecurrentCritic, is_recurrent, pack, unpack


@pytest.fixture(autouse=True, scope="module")
def _float64():
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


def _sequences(n: int, steps: int, obs: int, state: int, seed: int = 0, resets: bool = True) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    o = torch.randn(steps, n, obs, generator=g)
    starts = (torch.rand(steps, n, generator=g) < 0.3).double() if resets else torch.zeros(steps, n)
    starts[0] = 0.0
    h0 = 0.5 * torch.randn(n, state, generator=g)
    return pack(o, starts, h0)


def _actor(cell: str, kind: str = "categorical", obs: int = 3, act: int = 3) -> RecurrentActor:
    torch.manual_seed(0)
    return RecurrentActor(obs, act, kind, cell, state_hidden=4, hidden=(5,)).double()  # type: ignore[arg-type]


def test_pack_round_trips_and_refuses_a_width_that_does_not_fit():
    x = _sequences(2, 5, 3, 4)
    state, starts, obs = unpack(x, 4, 3)
    assert state.shape == (2, 4) and starts.shape == (2, 5) and obs.shape == (2, 5, 3)
    assert torch.equal(pack(obs.transpose(0, 1), starts.T, state), x)
    with pytest.raises(ValueError, match="do not fit"):
        unpack(x, 5, 3)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("kind", ["categorical", "gaussian"])
def test_sequences_give_what_stepping_gives_with_resets(cell, kind):
    """forward(packed) over N·T states (env-major) = step by step from the stored first state,
    the state zeroed where a start flag is set: what collection does."""
    actor = _actor(cell, kind)
    x = _sequences(3, 6, 3, actor.state_size, seed=1)
    state, starts, obs = unpack(x, actor.state_size, 3)
    whole = actor(x)
    a = whole.sample(torch.Generator().manual_seed(0))
    logp = whole.log_prob(a).reshape(3, 6)
    for t in range(6):
        state = state * (1 - starts[:, t : t + 1])
        d, state = actor.step(obs[:, t], state)
        assert torch.allclose(d.log_prob(a.reshape(3, 6, -1)[:, t].squeeze(-1) if kind == "categorical"
                                         else a.reshape(3, 6, -1)[:, t]), logp[:, t], atol=1e-12)  # fmt: skip


def test_a_start_flag_forgets_everything_before_it():
    actor = _actor("gru")
    x = _sequences(1, 6, 3, actor.state_size, resets=False)
    state, starts, obs = unpack(x, actor.state_size, 3)
    starts[0, 3] = 1.0
    cut = actor(pack(obs.transpose(0, 1), starts.T, state)).params[0][3:]
    fresh = actor(pack(obs[:, 3:].transpose(0, 1), torch.zeros(3, 1), torch.zeros_like(state))).params[0]
    assert torch.allclose(cut, fresh, atol=1e-14)
    other = actor(pack(obs.transpose(0, 1), starts.T, torch.randn_like(state))).params[0][3:]
    assert torch.allclose(other, fresh, atol=1e-14)  # the first state no longer matters


def _fisher_by_definition(actor: RecurrentActor, x: torch.Tensor) -> torch.Tensor:
    """F = mean over states of Σ_a π(a|s) ∇log π(a|s) ∇log π(a|s)ᵀ, every gradient by autograd
    through the whole sequence (the seed's definition, exact expectation over a Categorical)."""
    params = list(actor.parameters())
    logits = actor(x).params[0]
    logp = torch.log_softmax(logits, -1)
    states, n_actions = logp.shape
    total = torch.zeros(sum(p.numel() for p in params), sum(p.numel() for p in params))
    for s in range(states):
        for a in range(n_actions):
            g = flat_grad(logp[s, a], params, retain_graph=True)
            total += torch.exp(logp[s, a]).detach() * torch.outer(g, g)
    return total / states


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_fisher_three_ways_equals_the_definition_on_sequences(cell):
    actor = _actor(cell)
    x = _sequences(2, 4, 3, actor.state_size, seed=2)
    reference = _fisher_by_definition(actor, x)
    dense = fisher_matrix(actor, x)
    assert torch.allclose(dense, reference, atol=1e-10)
    v = torch.randn(reference.shape[0], generator=torch.Generator().manual_seed(3))
    for method in ("analytic", "kl_hessian"):
        assert torch.allclose(fisher_vector_product(actor, x, method=method)(v), reference @ v, atol=1e-10)
    assert torch.allclose(functorch_fvp(actor, x)(v), reference @ v, atol=1e-10)
    assert fisher_quadratic(actor, x, v) == pytest.approx(float(v @ reference @ v), rel=1e-9)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_natural_gradient_is_within_90_degrees_of_the_gradient(cell):
    actor = _actor(cell, "gaussian", act=2)
    x = _sequences(4, 8, 3, actor.state_size, seed=4)
    dist = actor(x)
    a = dist.sample(torch.Generator().manual_seed(5))
    adv = torch.randn(a.shape[0], generator=torch.Generator().manual_seed(6))
    g = flat_grad((dist.log_prob(a) * adv).mean(), list(actor.parameters()))
    fvp = fisher_vector_product(actor, x, damping=1e-3)
    ng = conjugate_gradient(fvp, g, iters=50).x
    assert angle_degrees(ng, g) < 90.0
    assert float(ng @ g) > 0


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_kl_matches_torch_distributions_on_every_state(cell):
    actor = _actor(cell)
    x = _sequences(2, 5, 3, actor.state_size, seed=7)
    old = actor(x)
    with torch.no_grad():
        for p in actor.parameters():
            p.add_(0.05 * torch.randn_like(p))
    new = actor(x)
    ours = kl(old, new)
    ref = torch.distributions.kl_divergence(
        torch.distributions.Categorical(logits=old.params[0]),
        torch.distributions.Categorical(logits=new.params[0]),
    )
    assert ours.shape == (10,) and torch.allclose(ours, ref, atol=1e-12)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_trpo_step_on_whole_sequences_keeps_their_kl_within_the_budget(cell):
    """The line search measures KL on the sequences (every state through the recurrence): the
    accepted step's KL, recomputed here per state with torch.distributions, is within δ."""
    actor = _actor(cell)
    x = _sequences(4, 10, 3, actor.state_size, seed=9)
    with torch.no_grad():
        old_logits = actor(x).params[0].clone()
        a = actor(x).sample(torch.Generator().manual_seed(10))
    adv = torch.randn(a.shape[0], generator=torch.Generator().manual_seed(11))
    stats = TRPO(max_kl=0.01).update(actor, PolicyBatch(x, a, adv))
    assert not stats.skipped and stats.surrogate_after > stats.surrogate_before
    with torch.no_grad():
        new_logits = actor(x).params[0]
    per_state = torch.distributions.kl_divergence(
        torch.distributions.Categorical(logits=old_logits), torch.distributions.Categorical(logits=new_logits)
    )
    assert per_state.shape == (40,) and float(per_state.mean()) <= 0.01 + 1e-12
    assert float(per_state.mean()) == pytest.approx(stats.measured_kl, rel=1e-9)


def test_a_rejected_step_restores_the_recurrent_parameters_bit_exactly(monkeypatch):
    actor = _actor("lstm")
    x = _sequences(3, 8, 3, actor.state_size, seed=12)
    with torch.no_grad():
        a = actor(x).sample(torch.Generator().manual_seed(13))
    adv = torch.randn(a.shape[0], generator=torch.Generator().manual_seed(14))
    theta0 = flat_params(actor)

    def worse(policy, batch, s):  # every candidate within the budget but worse
        return s.surr - 1.0, KLs(0.0, 0.0, 0.0)

    monkeypatch.setattr(rules, "_evaluate", worse)
    stats = TRPO(max_kl=0.01, max_backtracks=3).update(actor, PolicyBatch(x, a, adv))
    assert stats.skipped and "line search" in stats.skip_reason
    assert torch.equal(flat_params(actor), theta0)


def test_critic_gives_sequences_the_shape_of_their_returns_and_agrees_with_stepping():
    torch.manual_seed(0)
    critic = RecurrentCritic(3, "gru", 4, (5,)).double()
    x = _sequences(3, 6, 3, critic.state_size, seed=8)
    values = critic(x)
    assert values.shape == (3, 6)
    state, starts, obs = unpack(x, critic.state_size, 3)
    for t in range(6):
        v, state = critic.step(obs[:, t], state * (1 - starts[:, t : t + 1]))
        assert torch.allclose(v, values[:, t], atol=1e-12)


def test_recurrent_is_a_capability_and_the_config_refuses_per_layer_curvature():
    assert is_recurrent(_actor("gru")) and not is_recurrent(torch.nn.Linear(2, 2))
    for curvature in ("kfac", "diagonal", "empirical"):
        with pytest.raises(ValueError, match="curvature"):
            TrainConfig(policy="gru", curvature=curvature)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="policy"):
        TrainConfig(policy="rnn")  # type: ignore[arg-type]


def test_the_pomdp_wrapper_keeps_only_the_positions():
    import trustpg.envs  # noqa: F401  (registers the ids)

    env = gym.make("trustpg/CartPoleNoVel-v1")
    obs, _ = env.reset(seed=0)
    full = gym.make("CartPole-v1")
    ref, _ = full.reset(seed=0)
    assert obs.shape == (2,) and np.array_equal(obs, ref[[0, 2]])
    assert env.spec is not None and env.spec.max_episode_steps == 500
    pend = gym.make("trustpg/PendulumNoVel-v1")
    assert pend.observation_space.shape == (2,)
    from trustpg.envs.pomdp import KeepEntries

    with pytest.raises(ValueError, match="keep"):
        KeepEntries(gym.make("CartPole-v1"), [7])
