"""CriticFitter: the background (overlapped) critic fit gives exactly the synchronous result."""

from __future__ import annotations

import math

import pytest
import torch

from trustpg import TRPO
from trustpg.core.linalg import flat_params
from trustpg.nets.policies import Critic
from trustpg.train.value import CriticFitter, fit_value


def _setup(seed: int = 0) -> tuple[Critic, torch.optim.Optimizer, torch.Generator]:
    torch.manual_seed(seed)
    critic = Critic(5, (16, 16), "tanh")
    return critic, torch.optim.Adam(critic.parameters(), lr=1e-2), torch.Generator().manual_seed(1)


@pytest.mark.parametrize("overlap", [True, False])
def test_fitter_equals_direct_fit_value(overlap):
    obs, ret = torch.randn(300, 5), torch.randn(300)
    ref_critic, ref_opt, ref_gen = _setup()
    ref_losses = [fit_value(ref_critic, ref_opt, obs, ret * k, epochs=3, minibatch_size=64, generator=ref_gen)
                  for k in (1, 2)]  # fmt: skip
    critic, opt, gen = _setup()
    fitter = CriticFitter(critic, opt, gen, epochs=3, minibatch_size=64, overlap=overlap)
    fitter.start(obs, ret)
    fitter.start(obs, ret * 2)  # finishes the first fit before scheduling the second
    assert fitter.take_losses() == ref_losses[0]
    fitter.finish()
    assert torch.equal(flat_params(critic), flat_params(ref_critic))
    assert fitter.take_losses() == ref_losses[1]
    assert all(math.isnan(x) for x in fitter.take_losses())  # reported once
    fitter.close()


def test_fitter_error_surfaces_on_finish_and_close_logs_it(caplog):
    critic, opt, gen = _setup()
    fitter = CriticFitter(critic, opt, gen, epochs=1, minibatch_size=8, overlap=True)
    fitter.start(torch.randn(10, 3), torch.randn(10))  # wrong observation width
    with pytest.raises(RuntimeError):
        fitter.finish()
    fitter.start(torch.randn(10, 3), torch.randn(10))
    fitter.close()
    assert "pending critic fit failed" in caplog.text


@pytest.mark.parametrize("env", ["CartPole-v1", "Pendulum-v1"])
def test_overlapped_training_is_bit_identical_to_sequential(env):
    kw = dict(seed=3, num_envs=2, steps_per_env=64, vf_epochs=2, vf_minibatch_size=32, normalize_reward=True)
    rows, agents = {}, {}
    for overlap in (True, False):
        history: list[dict] = []
        agent = TRPO(env, critic_overlap=overlap, critic_process=False, **kw)
        agents[overlap] = agent.learn(640, history.append)
        rows[overlap] = history
    for name in ("actor", "critic"):
        a, b = (flat_params(getattr(agents[o].trainer, name)) for o in (True, False))
        assert torch.equal(a, b)
    for r1, r2 in zip(rows[True], rows[False], strict=True):
        for key in ("mean_return", "surrogate_after", "measured_kl", "value_loss_before", "value_loss"):
            assert r1[key] == r2[key] or (math.isnan(r1[key]) and math.isnan(r2[key])), key
    # the first update has no finished fit to report, every later one reports the previous batch's
    assert math.isnan(rows[True][0]["value_loss"]) and all(
        math.isfinite(r["value_loss"]) for r in rows[True][1:]
    )
