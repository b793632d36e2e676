"""trustpg.core.optim.Adam against torch.optim.Adam (the reference), and the memory it saves."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch
from torch import nn

from trustpg.core.optim import Adam


def _pair(dtype: torch.dtype) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    a = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 1)).to(dtype)
    b = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 1)).to(dtype)
    b.load_state_dict(a.state_dict())
    return a, b


def _train(model: nn.Module, opt, x: torch.Tensor, steps: int, frozen: bool = False) -> None:
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        (model(x) ** 2).mean().backward()
        if frozen:  # a parameter without a gradient is left alone, and gets no state
            model[2].bias.grad = None
        opt.step()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("frozen", [False, True])
def test_bit_identical_to_torch_fused_adam(dtype, frozen):
    a, b = _pair(dtype)
    x = torch.randn(64, 5, dtype=dtype)
    ours, ref = Adam(a.parameters(), lr=3e-3), torch.optim.Adam(b.parameters(), lr=3e-3, fused=True)
    _train(a, ours, x, 60, frozen)
    _train(b, ref, x, 60, frozen)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    assert len(ours.state) == len(ref.state) == (3 if frozen else 4)


def test_close_to_the_textbook_formula():
    """Independent of torch: the closed-form Adam update on a quadratic, step by step."""
    p = nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt, m, v = Adam([p], lr=0.1, betas=(0.9, 0.99), eps=1e-8), torch.zeros(2, dtype=torch.float64), 0
    expected = p.detach().clone()
    for t in range(1, 20):
        g = 2 * expected
        m = 0.9 * m + 0.1 * g
        v = 0.99 * v + 0.01 * g**2
        expected = expected - 0.1 * (m / (1 - 0.9**t)) / ((v / (1 - 0.99**t)).sqrt() + 1e-8)
        opt.zero_grad()
        (p**2).sum().backward()
        opt.step()
        torch.testing.assert_close(p.detach(), expected, rtol=1e-12, atol=1e-12)


def test_state_dict_round_trips_with_torch_adam():
    a, b = _pair(torch.float32)
    x = torch.randn(32, 5)
    ours = Adam(a.parameters(), lr=1e-2)
    _train(a, ours, x, 5)
    b.load_state_dict(a.state_dict())
    ref = torch.optim.Adam(b.parameters(), lr=1e-2, fused=True)
    ref.load_state_dict(copy.deepcopy(ours.state_dict()))  # ours → torch (it would share tensors)
    _train(a, ours, x, 5)
    _train(b, ref, x, 5)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    again = Adam(b.parameters(), lr=1e-2)
    again.load_state_dict(ref.state_dict())  # torch → ours
    a.load_state_dict(b.state_dict())
    _train(a, ours, x, 3)
    _train(b, again, x, 3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_bad_hyperparameters_and_mismatched_state_raise():
    a, _ = _pair(torch.float32)
    with pytest.raises(ValueError, match="invalid Adam"):
        Adam(a.parameters(), lr=-1.0)
    opt = Adam(a.parameters())
    bad = {"state": {0: {"step": torch.tensor(1.0), "exp_avg": torch.zeros(3), "exp_avg_sq": torch.zeros(3)}}}
    with pytest.raises(ValueError, match="does not match"):
        opt.load_state_dict(bad)


def test_training_does_not_import_torch_compiler_stack():
    """torch.optim pulls in torch._dynamo and sympy (~75 MB RSS); a training run must not."""
    code = (
        "import sys; from trustpg import TRPO, VPG;"
        "TRPO('CartPole-v1', seed=0, num_envs=2, steps_per_env=32, progress=False).learn(128);"
        "VPG('CartPole-v1', seed=0, num_envs=2, steps_per_env=32, vpg_optimizer='adam',"
        " progress=False).learn(128);"
        "print(sorted(m for m in ('sympy', 'torch._dynamo') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
