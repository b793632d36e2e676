"""The one NumPy MLP kernel (trustpg.accel.np_mlp) against the torch modules and autograd in float64,
and a LayerNorm actor that trains through torch, saying once that the NumPy sampler is off."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch import nn

from trustpg.accel import fallback, np_mlp
from trustpg.nets.policies import Actor, Critic


@pytest.mark.parametrize("activation", np_mlp.ACTIVATIONS)
def test_forward_and_derivative_equal_torch_in_float64(activation: str) -> None:
    torch.manual_seed(0)
    actor = Actor(4, 3, "gaussian", (7, 5), activation).double()
    with torch.no_grad():
        for p in actor.parameters():
            p.add_(0.5 * torch.randn_like(p))
    spec = actor.mlp_spec()
    assert spec is not None and spec.activation == activation
    obs = torch.randn(9, 4, dtype=torch.float64)
    layers = [(w.detach().numpy().T, b.detach().numpy()) for w, b in spec.layers()]
    with torch.no_grad():
        want = actor(obs).params[0].numpy()
    got = np_mlp.forward(layers, activation, obs.numpy())[-1]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    z = torch.randn(50, dtype=torch.float64, requires_grad=True)
    h = {"tanh": torch.tanh, "relu": torch.relu, "elu": nn.functional.elu}[activation](z)
    (want,) = torch.autograd.grad(h.sum(), z)
    got = np_mlp.derivative(activation, np_mlp.activate(activation, z.detach().numpy().copy()))
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-12, atol=1e-12)


def test_unknown_activation_is_an_error() -> None:
    with pytest.raises(ValueError, match="knows"):
        np_mlp.activate("gelu", np.zeros(3))


def test_critic_spec() -> None:
    spec = Critic(3, (4,), "elu").mlp_spec()
    assert spec is not None and spec.head == "value" and spec.alpha == 1.0 and len(spec.linears) == 2


def test_layernorm_actor_trains_through_torch_and_says_so_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trustpg import TRPO
    from trustpg.accel.fast_actor import NumpyActor
    from trustpg.core.linalg import flat_params

    def layernorm_actor() -> Actor:
        torch.manual_seed(0)
        actor = Actor(4, 2, "categorical", (16, 16))
        actor.net.insert(1, nn.LayerNorm(16))
        return actor

    fallback.reset()
    with caplog.at_level(logging.INFO, logger="trustpg"):
        agent = TRPO("CartPole-v1", policy=layernorm_actor(), seed=0, num_envs=2, steps_per_env=64,
                     progress=False, eval_episodes=0)  # fmt: skip
        agent.learn(3 * 128)
        got = flat_params(agent.trainer.actor)
        agent.close()
    said = [r for r in caplog.records if "fast NumPy sampler off" in r.getMessage()]
    assert len(said) == 1 and said[0].levelname == "WARNING"
    assert "Actor has a LayerNorm (mlp_spec() is None)" in said[0].getMessage()
    # The reference samples through torch by construction: the same run, bit for bit.
    monkeypatch.setattr(NumpyActor, "attach", classmethod(lambda cls, actor: None))
    ref = TRPO("CartPole-v1", policy=layernorm_actor(), seed=0, num_envs=2, steps_per_env=64,
               progress=False, eval_episodes=0)  # fmt: skip
    ref.learn(3 * 128)
    assert agent.trainer.updates == 3 and torch.equal(got, flat_params(ref.trainer.actor))
    ref.close()
