"""The in-process regression gradient of the default MLP critic (trustpg.accel.mlp_value: the one
NumPy kernel's over torch's operations) against autograd and against the kernel over NumPy, when it
is used, and the critic fit it drives against the autograd fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from trustpg.accel import mlp_value, np_mlp
from trustpg.accel.mlp_value import MSEGradient
from trustpg.core.optim import Adam
from trustpg.nets.policies import Actor, Critic, mlp_spec_of
from trustpg.train.value import fit_value

DT = torch.float64
ACTIVATIONS = ("tanh", "relu", "elu")


def _critic(activation: str = "tanh", hidden: tuple[int, ...] = (6, 5), seed: int = 0, dtype=DT) -> Critic:
    """A critic on 4-D observations with parameters far from their init (non-zero biases, both
    sides of the ReLU/ELU kinks)."""
    torch.manual_seed(seed)
    critic = Critic(4, hidden, activation).to(dtype)
    with torch.no_grad():
        for p in critic.parameters():
            p.add_(0.5 * torch.randn_like(p))
    return critic


def _data(n: int = 37, seed: int = 1, dtype=DT) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g, dtype=dtype), 3 * torch.randn(n, generator=g, dtype=dtype)


def _autograd_grads(critic: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    loss = (critic(x) - y).pow(2).mean()
    return list(torch.autograd.grad(loss, list(critic.parameters())))


class _Subclass(Critic):
    """Same network, but its own forward (which could differ): no MLP spec, so the fit uses autograd."""

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return super().forward(obs)


def _grad(critic: Critic) -> MSEGradient:
    spec = critic.mlp_spec()
    assert spec is not None
    return MSEGradient(spec)


def supports(critic: nn.Module) -> bool:
    return mlp_spec_of(critic)[0] is not None


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("hidden", [(), (7,), (6, 5), (3, 8, 4)])
def test_gradient_equals_autograd(activation: str, hidden: tuple[int, ...]) -> None:
    critic = _critic(activation, hidden)
    x, y = _data()
    expected = _autograd_grads(critic, x, y)
    _grad(critic)(x, y)
    for p, g in zip(critic.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-12, atol=1e-12)


def test_is_the_kernel_over_torch_ops(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not a copy of the MLP: the critic worker's own function, np_mlp.mse_gradient, does the work."""
    seen = []
    real = np_mlp.mse_gradient

    def spy(*args: object) -> None:
        seen.append(args[-1])
        real(*args)

    monkeypatch.setattr(np_mlp, "mse_gradient", spy)
    _grad(_critic())(*_data())
    assert seen == [mlp_value.TORCH]


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_torch_ops_equal_numpy_ops_in_float64(activation: str) -> None:
    """The kernel over torch's operations (the trainer process) and over NumPy's (the worker)."""
    critic = _critic(activation, (7, 5))
    x, y = _data()
    layers = [(w.detach().numpy().T, b.detach().numpy()) for w, b in critic.mlp_spec().layers()]
    want = [(np.zeros(w.shape[::-1]), np.zeros(b.shape)) for w, b in layers]
    np_mlp.mse_gradient(layers, activation, x.numpy(), y.numpy(), want)
    _grad(critic)(x, y)
    got = [p.grad.numpy() for p in critic.parameters()]
    for g, w in zip(got, [a for pair in want for a in pair], strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)


def test_gradient_is_overwritten_not_accumulated() -> None:
    critic = _critic()
    grad = _grad(critic)
    x1, y1 = _data(seed=1)
    x2, y2 = _data(seed=2)
    grad(x1, y1)
    grad(x2, y2)
    for p, g in zip(critic.parameters(), _autograd_grads(critic, x2, y2), strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-12, atol=1e-12)


def test_gradient_of_a_perfect_fit_is_zero() -> None:
    critic = _critic()
    x, _ = _data()
    with torch.no_grad():
        y = critic(x)
    _grad(critic)(x, y)
    assert all(float(p.grad.abs().max()) < 1e-14 for p in critic.parameters())


def test_supports() -> None:
    assert supports(Critic(3))
    assert supports(Critic(3, (), "relu"))
    assert supports(Critic(3, (4, 4), "elu"))
    assert not supports(_Subclass(3))
    assert not supports(nn.Sequential(nn.Linear(3, 1)))
    shared = Critic(3, (4,))
    shared.extra = nn.Parameter(torch.zeros(1))  # a parameter the gradient would not cover
    assert not supports(shared)
    odd = Critic(3, (4,))
    odd.net = nn.Sequential(nn.Linear(3, 4), nn.Sigmoid(), nn.Linear(4, 1))  # unknown activation
    assert not supports(odd)
    no_bias = Critic(3, (4,))
    no_bias.net[0] = nn.Linear(3, 4, bias=False)
    assert not supports(no_bias)
    assert mlp_spec_of(_Subclass(3))[1] == "_Subclass overrides forward"
    assert "has a Sigmoid" in mlp_spec_of(odd)[1]
    assert supports(type("NoOverride", (Critic,), {})(3))  # a subclass with the stock forward


def test_attaches_by_spec_and_says_once_when_it_cannot(caplog: pytest.LogCaptureFixture) -> None:
    from trustpg.accel import fallback
    from trustpg.train.value import _by_hand

    fallback.reset()
    with caplog.at_level("INFO", logger="trustpg"):
        assert _by_hand(Critic(3)) is not None
        assert _by_hand(_Subclass(3)) is None and _by_hand(_Subclass(3)) is None
    said = [r.getMessage() for r in caplog.records]
    assert said == ["kernel critic gradient off: _Subclass overrides forward (mlp_spec() is None); "
                    "the critic is fitted by autograd (~1.7x slower a minibatch)"]  # fmt: skip
    with pytest.raises(ValueError, match="not a value"):
        MSEGradient(Actor(3, 2, "categorical").mlp_spec())  # type: ignore[arg-type]


def _fit(critic: nn.Module, epochs: int = 4, minibatch: int = 8) -> tuple[float, float]:
    x, y = _data(n=40, dtype=next(critic.parameters()).dtype)
    opt = Adam(critic.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(5)
    return fit_value(critic, opt, x, y, epochs=epochs, minibatch_size=minibatch, generator=g)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_fit_by_hand_equals_autograd_fit(activation: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same minibatches in the same order, same Adam: the fitted critics agree (float64) and the
    loss goes down; the reference is the autograd path, forced by disabling ``_by_hand``."""
    by_hand = _critic(activation)
    reference = _critic(activation)
    calls = []
    real = mlp_value.MSEGradient.__call__
    monkeypatch.setattr(mlp_value.MSEGradient, "__call__", lambda s, x, y: calls.append(1) or real(s, x, y))
    losses = _fit(by_hand)
    assert len(calls) == 4 * 5  # 4 epochs of 5 minibatches
    monkeypatch.setattr("trustpg.train.value._by_hand", lambda critic: None)
    ref_losses = _fit(reference)
    assert len(calls) == 20  # the reference did not use the hand-written gradient
    assert losses[1] < losses[0]
    assert losses == pytest.approx(ref_losses, rel=1e-10)
    for p, q in zip(by_hand.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-10)


def test_float32_fit_close_to_autograd(monkeypatch: pytest.MonkeyPatch) -> None:
    """In float32 the two differ only by rounding (different summation order, NumPy's tanh)."""
    by_hand = _critic(dtype=torch.float32)
    reference = _critic(dtype=torch.float32)
    _fit(by_hand)
    monkeypatch.setattr("trustpg.train.value._by_hand", lambda critic: None)
    _fit(reference)
    for p, q in zip(by_hand.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


def test_subclass_uses_autograd(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object) -> None:
        raise AssertionError("the hand-written gradient must not be used for a subclass")

    monkeypatch.setattr(mlp_value.MSEGradient, "__call__", fail)
    critic = _Subclass(4, (6, 5)).to(DT)
    before, after = _fit(critic)
    assert after < before
