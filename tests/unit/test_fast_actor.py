"""NumpyActor samples from the same distribution as the PyTorch Actor it snapshots."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from trustpg.accel import fallback
from trustpg.accel.fast_actor import NumpyActor
from trustpg.nets.policies import Actor, Critic

KINDS = [("categorical", 5, ()), ("multicategorical", 5, (2, 3)), ("bernoulli", 3, ()), ("gaussian", 3, ())]


def _actor(kind: str, dim: int, nvec: tuple[int, ...], activation: str = "tanh") -> Actor:
    torch.manual_seed(0)
    actor = Actor(4, dim, kind, (16, 16), activation, log_std_init=-0.3, nvec=nvec)
    with torch.no_grad():  # a non-trivial head, so the distributions are far from uniform
        actor.net[-1].weight.mul_(100)
    return actor


@pytest.mark.parametrize("activation", ["tanh", "relu", "elu"])
@pytest.mark.parametrize(("kind", "dim", "nvec"), KINDS)
def test_outputs_match_the_torch_actor(kind, dim, nvec, activation):
    actor = _actor(kind, dim, nvec, activation)
    obs = torch.randn(32, 4)
    with torch.no_grad():
        expected = actor(obs).params[0].numpy()
    got = NumpyActor(actor.mlp_spec()).outputs(obs.numpy())
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("kind", "dim", "nvec"), KINDS)
def test_samples_use_the_same_random_numbers_as_torch(kind, dim, nvec):
    """Same generator state → the same actions as Distribution.sample (continuous ones up to float
    rounding of the network's output), and the generator advances by the same draws."""
    actor = _actor(kind, dim, nvec)
    fast = NumpyActor(actor.mlp_spec())
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    refs, ours = [], []
    for _ in range(3):  # consecutive draws reuse NumpyActor's random buffers
        obs = torch.randn(64, 4)
        obs_np = obs.numpy().copy()
        with torch.no_grad():
            refs.append(actor(obs).sample(g1).numpy())
        ours.append(fast.sample(obs_np, g2))
        np.testing.assert_array_equal(obs_np, obs.numpy())  # the input is left as it was
    for a, ref in zip(ours, refs):  # earlier actions are not overwritten by later draws
        assert a.dtype == ref.dtype
        np.testing.assert_allclose(a, ref, rtol=1e-5, atol=1e-5)
    assert torch.equal(g1.get_state(), g2.get_state())


@pytest.mark.parametrize(("kind", "dim", "nvec"), KINDS[:2])
def test_categorical_frequencies_match_probabilities(kind, dim, nvec):
    """Monte Carlo: 40k draws for 3 states; frequencies within 5 standard errors of the probs."""
    actor = _actor(kind, dim, nvec)
    obs = torch.randn(3, 4)
    with torch.no_grad():
        dist = actor(obs)
    parts = dist.parts if kind == "multicategorical" else [dist]
    fast, g, n = NumpyActor(actor.mlp_spec()), torch.Generator().manual_seed(0), 40_000
    draws = np.stack([fast.sample(obs.numpy(), g) for _ in range(n)])  # [n, 3] or [n, 3, D]
    assert draws.dtype == np.int64
    draws = draws.reshape(n, 3, -1)
    for d, part in enumerate(parts):
        probs = part.probs.numpy()
        for s in range(3):
            freq = np.bincount(draws[:, s, d], minlength=probs.shape[-1]) / n
            se = np.sqrt(probs[s] * (1 - probs[s]) / n) + 1e-9
            assert np.all(np.abs(freq - probs[s]) <= 5 * se + 1e-4), (freq, probs[s])


def test_attaches_by_mlp_spec_and_says_once_when_it_cannot(caplog):
    class Custom(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(4, 2))

    class Sub(Actor):  # the stock forward: the spec (and the fast path) still apply
        pass

    class OwnForward(Actor):
        def forward(self, obs):
            return super().forward(2 * obs)

    fallback.reset()
    with caplog.at_level("INFO", logger="trustpg"):
        assert NumpyActor.attach(_actor("gaussian", 3, ())) is not None
        assert NumpyActor.attach(Sub(4, 2, "categorical")) is not None
        assert NumpyActor.attach(Custom()) is None
        assert NumpyActor.attach(OwnForward(4, 2, "categorical")) is None
        odd = _actor("gaussian", 3, ())
        odd.net.insert(1, nn.LayerNorm(16))
        assert odd.mlp_spec() is None
        assert NumpyActor.attach(odd) is None
        assert NumpyActor.attach(odd) is None  # said once
        assert NumpyActor.attach(_actor("gaussian", 3, ()).double()) is None
    said = [r.getMessage() for r in caplog.records]
    tail = "; sampling uses the torch module (~3x slower per step)"
    assert said == [
        "fast NumPy sampler off: Custom declares no mlp_spec() (mlp_spec() is None)" + tail,
        "fast NumPy sampler off: OwnForward overrides forward (mlp_spec() is None)" + tail,
        "fast NumPy sampler off: Actor has a LayerNorm (mlp_spec() is None)" + tail,
        "fast NumPy sampler off: the actor's parameters are not float32 on the CPU" + tail,
    ]
    assert all(r.levelname == "WARNING" for r in caplog.records)
    with pytest.raises(ValueError, match="not an action distribution"):
        NumpyActor(Critic(4).mlp_spec())  # type: ignore[arg-type]
