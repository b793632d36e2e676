"""The entropy bonus (``entropy_coef`` c): every rule maximises L(θ) + c·E_s[H(π_θ(·|s))].

Checked against independent references: the gradient against autograd through
``torch.distributions``' entropies, VPG's step on a Gaussian's log σ against the closed form
∂H/∂log σ_d = 1, and TRPO's step with no advantage signal raises the entropy inside the same
KL budget. With c = 0 the objective is the seed's surrogate, bit for bit.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import distributions as td

from tests.unit._policies import make_batch, make_policy, theta0
from trustpg import TRPO as TRPOAgent
from trustpg.core.linalg import flat_grad, flat_params
from trustpg.core.rules import NPG, TRPO, VPG
from trustpg.core.update import PolicyBatch, surrogate


def _reference_entropy(kind: str, policy: torch.nn.Module, obs: torch.Tensor) -> torch.Tensor:
    """E_s[H] from torch.distributions, built from the policy's own layers (not trustpg's dists)."""
    out = policy.net(obs)
    if kind == "categorical":
        return td.Categorical(logits=out).entropy().mean()
    if kind == "bernoulli":
        return td.Bernoulli(logits=out).entropy().sum(-1).mean()
    return td.Normal(out, policy.log_std.exp()).entropy().sum(-1).mean()


@pytest.mark.parametrize("kind", ["categorical", "bernoulli", "gaussian"])
def test_the_gradient_is_the_surrogates_plus_c_times_the_entropys(kind):
    policy = make_policy(kind)
    batch = make_batch(policy, n=64)
    c = 0.37
    with torch.no_grad():
        logp_old = policy(batch.obs).log_prob(batch.actions)
    got = flat_grad(
        surrogate(policy(batch.obs), PolicyBatch(batch.obs, batch.actions, batch.advantages, c), logp_old),
        policy.parameters(),
    )
    plain = flat_grad(surrogate(policy(batch.obs), batch, logp_old), policy.parameters())
    ent = flat_grad(_reference_entropy(kind, policy, batch.obs), policy.parameters())
    torch.testing.assert_close(got, plain + c * ent, rtol=1e-10, atol=1e-12)
    assert float((got - plain).norm()) > 1e-3  # the bonus changed the gradient


def test_a_zero_coefficient_is_the_seeds_surrogate_bit_for_bit():
    policy = make_policy("categorical")
    batch = make_batch(policy)
    dist = policy(batch.obs)
    logp_old = dist.log_prob(batch.actions).detach()
    zero = PolicyBatch(batch.obs, batch.actions, batch.advantages, 0.0)
    assert torch.equal(surrogate(dist, zero, logp_old), surrogate(dist, batch, logp_old))


def test_vpg_moves_a_gaussians_log_std_by_lr_times_c_with_no_advantage_signal():
    """∂/∂log σ_d of E[H] = 1 for each d (H = Σ_d log σ_d + const), and the surrogate's gradient
    is 0 when every advantage is 0: one SGD step adds lr·c to each log σ_d, and nothing else."""
    policy = make_policy("gaussian")
    batch = make_batch(policy)
    lr, c = 0.05, 0.2
    log_std = policy.log_std.detach().clone()
    net = flat_params(policy.net)
    VPG(lr=lr).update(policy, PolicyBatch(batch.obs, batch.actions, torch.zeros_like(batch.advantages), c))
    torch.testing.assert_close(policy.log_std.detach(), log_std + lr * c, rtol=0, atol=1e-12)
    assert torch.equal(flat_params(policy.net), net)


@pytest.mark.parametrize("rule", [TRPO(max_kl=0.01), NPG(max_kl=0.01)], ids=["trpo", "npg"])
def test_with_no_advantage_signal_the_natural_step_raises_the_entropy_within_the_kl_budget(rule):
    policy = make_policy("categorical")
    batch = make_batch(policy, n=128)
    flat = PolicyBatch(batch.obs, batch.actions, torch.zeros_like(batch.advantages), 0.05)
    with torch.no_grad():
        before = float(policy(batch.obs).entropy().mean())
    stats = rule.update(policy, flat)
    with torch.no_grad():
        after = float(policy(batch.obs).entropy().mean())
    assert not stats.skipped
    assert after > before + 1e-4
    assert stats.measured_kl <= 0.01 * 1.5  # NPG's step is ½xᵀFx = δ to second order; TRPO's ≤ δ
    # The surrogate the rule reports is the bonus: c · E[H] before and after.
    assert math.isclose(stats.surrogate_before, 0.05 * before, rel_tol=1e-9)
    assert math.isclose(stats.surrogate_after, 0.05 * after, rel_tol=1e-9)


def test_without_the_bonus_no_advantage_signal_means_no_step():
    policy = make_policy("categorical")
    batch = make_batch(policy)
    theta = theta0(policy)
    stats = TRPO().update(policy, PolicyBatch(batch.obs, batch.actions, torch.zeros_like(batch.advantages)))
    assert stats.skip_reason == "zero gradient"
    assert torch.equal(theta0(policy), theta)


def test_the_bonus_reaches_the_update_from_the_config(tmp_path):
    """An agent's entropy_coef weights the bonus in its updates. On a Gaussian policy each log σ_d
    gets ∂/∂log σ_d of c·E[H] = c from the bonus and at most sqrt(E[Â²]·E[(z²−1)²]) = √2 in size
    from the normalised-advantage surrogate (Cauchy–Schwarz, z ~ N(0, 1)), and the Gaussian's
    Fisher does not couple log σ with the mean: with c = 10 every update raises every log σ_d."""
    agent = TRPOAgent("Pendulum-v1", seed=0, num_envs=2, steps_per_env=64, entropy_coef=10.0,
                      run_dir=str(tmp_path), tensorboard=False, eval_episodes=0)  # fmt: skip
    assert agent.config.entropy_coef == 10.0
    log_std = [agent.policy.log_std.detach().clone()]
    agent.learn(384, callback=lambda row: log_std.append(agent.policy.log_std.detach().clone()) or True)
    assert len(log_std) == 4
    for before, after in itertools.pairwise(log_std):
        assert bool((after > before).all()), (before, after)
