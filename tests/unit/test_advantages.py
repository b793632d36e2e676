"""GAE and discounted returns against a naive per-env, per-step loop and hand-computed cases."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from trustpg.core.advantages import discounted_returns, gae, normalize

DT = torch.float64


def naive_gae(rewards, values, next_values, terminated, truncated, gamma, lam):
    """Â_t = Σ_k (γλ)^k δ_{t+k}, summing forward within the episode, with
    δ_t = r_t + γ(1 − term_t) V(s_{t+1}) − V(s_t); stops after a done step or at T−1."""
    T, N = len(rewards), len(rewards[0])
    adv = [[0.0] * N for _ in range(T)]
    for n in range(N):
        deltas = [
            rewards[t][n] + (0.0 if terminated[t][n] else gamma * next_values[t][n]) - values[t][n]
            for t in range(T)
        ]
        for t in range(T):
            total, k = 0.0, 0
            while t + k < T:
                total += (gamma * lam) ** k * deltas[t + k]
                if terminated[t + k][n] or truncated[t + k][n]:
                    break
                k += 1
            adv[t][n] = total
    return torch.tensor(adv, dtype=DT)


def naive_returns(rewards, next_values, terminated, truncated, gamma):
    """G_t = Σ_k γ^k r_{t+k} within the episode, + γ^{k+1} V(s_{t+k+1}) where it is cut by a
    truncation or the end of the rollout."""
    T, N = len(rewards), len(rewards[0])
    out = [[0.0] * N for _ in range(T)]
    for n in range(N):
        for t in range(T):
            total, k = 0.0, 0
            while True:
                total += gamma**k * rewards[t + k][n]
                if terminated[t + k][n]:
                    break
                if truncated[t + k][n] or t + k == T - 1:
                    total += gamma ** (k + 1) * next_values[t + k][n]
                    break
                k += 1
            out[t][n] = total
    return torch.tensor(out, dtype=DT)


def _random_rollout(T: int, N: int, seed: int, p_term: float = 0.15, p_trunc: float = 0.1, consistent=False):
    """Random rewards, values and dones. With ``consistent`` the next-state values are those
    a rollout would give: V(s_{t+1}) = values[t+1] inside an episode (a truncated step keeps
    its own V of the final observation; a terminated step's is unused)."""
    g = torch.Generator().manual_seed(seed)
    r = torch.randn(T, N, generator=g, dtype=DT)
    v = torch.randn(T, N, generator=g, dtype=DT)
    nv = torch.randn(T, N, generator=g, dtype=DT)
    u = torch.rand(T, N, generator=g, dtype=DT)
    term = u < p_term
    trunc = (u >= p_term) & (u < p_term + p_trunc)
    if consistent:
        inside = ~(term | trunc)[:-1]
        nv[:-1] = torch.where(inside, v[1:], nv[:-1])
    return r, v, nv, term, trunc


def _as_lists(*ts):
    return [t.tolist() for t in ts]


@pytest.mark.parametrize(("gamma", "lam"), [(0.99, 0.95), (0.9, 0.0), (0.95, 1.0), (1.0, 0.5)])
def test_gae_matches_naive_loop(gamma, lam):
    r, v, nv, term, trunc = _random_rollout(T=25, N=4, seed=0)
    adv, ret = gae(r, v, nv, term, trunc, gamma=gamma, lam=lam)
    expected = naive_gae(*_as_lists(r, v, nv, term, trunc), gamma, lam)
    assert adv.shape == (25, 4)
    assert term.any() and trunc.any()
    torch.testing.assert_close(adv, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ret, expected + v, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, DT])
def test_gae_with_gradients_gives_the_same_numbers_and_lets_them_flow(dtype):
    """Inputs that require grad take the PyTorch recursion; others the NumPy one (the training
    path). Both give the same bits, and the PyTorch one is differentiable."""
    r, v, nv, term, trunc = (x.to(dtype) if x.is_floating_point() else x for x in _random_rollout(40, 5, 3))
    adv, ret = gae(r, v, nv, term, trunc, gamma=0.99, lam=0.95)
    v_grad = v.clone().requires_grad_(True)
    adv_g, ret_g = gae(r, v_grad, nv, term, trunc, gamma=0.99, lam=0.95)
    assert adv.dtype == dtype and not adv.requires_grad and adv_g.requires_grad
    assert torch.equal(adv_g.detach(), adv) and torch.equal(ret_g.detach(), ret)
    adv_g.sum().backward()
    assert v_grad.grad is not None and torch.isfinite(v_grad.grad).all()
    assert (v_grad.grad <= 0).all()  # a larger V(s_t) only lowers advantages


def test_gae_accepts_float_flags():
    r, v, nv, term, trunc = _random_rollout(T=10, N=3, seed=1)
    a1, _ = gae(r, v, nv, term, trunc, gamma=0.9, lam=0.8)
    a2, _ = gae(r, v, nv, term.to(DT), trunc.to(DT), gamma=0.9, lam=0.8)
    assert torch.equal(a1, a2)


def test_lambda_zero_gives_td_errors():
    r, v, nv, term, trunc = _random_rollout(T=12, N=3, seed=2)
    gamma = 0.9
    adv, _ = gae(r, v, nv, term, trunc, gamma=gamma, lam=0.0)
    delta = r + gamma * (~term).to(DT) * nv - v
    torch.testing.assert_close(adv, delta, rtol=1e-14, atol=1e-14)


def test_lambda_one_gives_discounted_returns_minus_values():
    """With λ = 1 the TD errors telescope (V(s_{t+1}) of one step is V(s_t) of the next)."""
    r, v, nv, term, trunc = _random_rollout(T=20, N=4, seed=3, consistent=True)
    assert term.any() and trunc.any()
    gamma = 0.95
    adv, ret = gae(r, v, nv, term, trunc, gamma=gamma, lam=1.0)
    G = discounted_returns(r, term, trunc, gamma=gamma, bootstrap=nv)
    torch.testing.assert_close(adv, G - v, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ret, G, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(G, naive_returns(*_as_lists(r, nv, term, trunc), gamma))


def test_discounted_returns_hand_computed():
    # One env, γ = 0.5: rewards 1, 2, 3, 4; terminated after step 1, rollout ends after 3.
    r = torch.tensor([[1.0], [2.0], [3.0], [4.0]], dtype=DT)
    term = torch.tensor([[False], [True], [False], [False]])
    trunc = torch.zeros_like(term)
    G = discounted_returns(r, term, trunc, gamma=0.5)
    torch.testing.assert_close(G, torch.tensor([[2.0], [2.0], [5.0], [4.0]], dtype=DT))
    boot = torch.full((4, 1), 8.0, dtype=DT)
    G = discounted_returns(r, term, trunc, gamma=0.5, bootstrap=boot)
    # The last row adds γ·8 = 4; the terminated episode takes no bootstrap.
    torch.testing.assert_close(G, torch.tensor([[2.0], [2.0], [7.0], [8.0]], dtype=DT))
    # A truncation after step 1 instead: G_1 = 2 + γ·8, G_0 = 1 + γ·G_1.
    G = discounted_returns(r, trunc, term, gamma=0.5, bootstrap=boot)
    torch.testing.assert_close(G, torch.tensor([[4.0], [6.0], [7.0], [8.0]], dtype=DT))


def test_truncation_bootstraps_termination_does_not():
    """Two envs with the same rewards and values; the first episode ends at t = 0 by
    termination in env 0 and by truncation in env 1, whose final observation has V = 10.

    γ = 0.5, λ = 0.5, r = (1, 0, 1), V(s_t) = (2, 3, 4), next V = (10, 4, 5):
      env 0: δ = (1 − 2, 0 + 0.5·4 − 3, 1 + 0.5·5 − 4) = (−1, −1, −0.5)
      env 1: δ_0 = 1 + 0.5·10 − 2 = 4
      Â_2 = −0.5, Â_1 = −1 + 0.25·(−0.5) = −1.125, Â_0 = δ_0 (no crossing into t = 1).
    """
    r = torch.tensor([[1.0, 1.0], [0.0, 0.0], [1.0, 1.0]], dtype=DT)
    v = torch.tensor([[2.0, 2.0], [3.0, 3.0], [4.0, 4.0]], dtype=DT)
    nv = torch.tensor([[10.0, 10.0], [4.0, 4.0], [5.0, 5.0]], dtype=DT)
    term = torch.tensor([[True, False], [False, False], [False, False]])
    trunc = torch.tensor([[False, True], [False, False], [False, False]])
    adv, ret = gae(r, v, nv, term, trunc, gamma=0.5, lam=0.5)
    expected = torch.tensor([[-1.0, 4.0], [-1.125, -1.125], [-0.5, -0.5]], dtype=DT)
    torch.testing.assert_close(adv, expected, rtol=0, atol=1e-15)
    torch.testing.assert_close(ret, expected + v, rtol=0, atol=1e-15)


def test_rollout_end_bootstraps_like_truncation():
    r = torch.tensor([[1.0]], dtype=DT)
    v = torch.tensor([[0.5]], dtype=DT)
    nv = torch.tensor([[2.0]], dtype=DT)
    no = torch.tensor([[False]])
    adv_cut, _ = gae(r, v, nv, no, no, gamma=0.9, lam=0.95)
    adv_trunc, _ = gae(r, v, nv, no, ~no, gamma=0.9, lam=0.95)
    adv_term, _ = gae(r, v, nv, ~no, no, gamma=0.9, lam=0.95)
    assert float(adv_cut) == pytest.approx(1.0 + 0.9 * 2.0 - 0.5)
    assert float(adv_trunc) == pytest.approx(1.0 + 0.9 * 2.0 - 0.5)
    assert float(adv_term) == pytest.approx(1.0 - 0.5)


@pytest.mark.parametrize("end", ["terminated", "truncated"])
def test_recursion_does_not_cross_episode_boundaries(end):
    r, v, nv, _, _ = _random_rollout(T=10, N=2, seed=4)
    done = torch.zeros(10, 2, dtype=torch.bool)
    done[4] = True  # episodes [0..4] and [5..9]
    none = torch.zeros_like(done)
    flags = (done, none) if end == "terminated" else (none, done)
    adv, _ = gae(r, v, nv, *flags, gamma=0.99, lam=0.95)
    # Change everything about the second episode: the first one's advantages are unchanged.
    r2, v2, nv2 = r.clone(), v.clone(), nv.clone()
    r2[5:] += 100.0
    v2[5:] -= 7.0
    nv2[5:] *= -3.0
    adv2, _ = gae(r2, v2, nv2, *flags, gamma=0.99, lam=0.95)
    assert torch.equal(adv[:5], adv2[:5])
    assert not torch.allclose(adv[5:], adv2[5:])
    # Without the boundary the first episode would see the change.
    adv3, _ = gae(r2, v2, nv2, none, none, gamma=0.99, lam=0.95)
    assert not torch.allclose(adv3[:5], adv[:5])


def test_envs_are_independent():
    r, v, nv, term, trunc = _random_rollout(T=8, N=3, seed=5)
    adv, _ = gae(r, v, nv, term, trunc, gamma=0.97, lam=0.9)
    for n in range(3):
        col, _ = gae(*(x[:, n : n + 1] for x in (r, v, nv, term, trunc)), gamma=0.97, lam=0.9)
        torch.testing.assert_close(adv[:, n : n + 1], col, rtol=0, atol=0)


def test_shape_errors():
    r, v, nv, term, trunc = _random_rollout(T=5, N=2, seed=6)
    with pytest.raises(ValueError):
        gae(r[:, 0], v[:, 0], nv[:, 0], term[:, 0], trunc[:, 0], gamma=0.9, lam=0.9)
    with pytest.raises(ValueError):
        gae(r, v[:4], nv, term, trunc, gamma=0.9, lam=0.9)
    with pytest.raises(ValueError):
        gae(r, v, nv.T, term, trunc, gamma=0.9, lam=0.9)
    with pytest.raises(ValueError):
        gae(r, v, nv, term[:, :1], trunc, gamma=0.9, lam=0.9)
    with pytest.raises(ValueError):
        gae(r, v, nv, term, trunc[:3], gamma=0.9, lam=0.9)
    with pytest.raises(ValueError):
        discounted_returns(r[None], term[None], trunc[None], gamma=0.9)
    with pytest.raises(ValueError):
        discounted_returns(r, term[:, :1], trunc, gamma=0.9)


def test_normalize():
    g = torch.Generator().manual_seed(7)
    x = 3.0 + 5.0 * torch.randn(40, 3, generator=g, dtype=DT)
    y = normalize(x)
    assert y.shape == x.shape
    assert abs(float(y.mean())) < 1e-12
    assert float(y.std(unbiased=False)) == pytest.approx(1.0, rel=1e-8)
    # An affine map of x: order and relative spacing are kept.
    torch.testing.assert_close(y, (x - x.mean()) / x.std(unbiased=False), rtol=1e-7, atol=1e-9)
    # A constant input does not divide by zero.
    assert torch.equal(normalize(torch.full((5,), 2.0, dtype=DT)), torch.zeros(5, dtype=DT))


@settings(max_examples=40, deadline=None)
@given(
    T=st.integers(1, 12),
    N=st.integers(1, 4),
    seed=st.integers(0, 2**31 - 1),
    gamma=st.floats(0.0, 1.0),
    lam=st.floats(0.0, 1.0),
    p_term=st.floats(0.0, 0.5),
    p_trunc=st.floats(0.0, 0.5),
)
def test_property_gae_matches_naive_loop(T, N, seed, gamma, lam, p_term, p_trunc):
    r, v, nv, term, trunc = _random_rollout(T, N, seed, p_term, p_trunc)
    adv, ret = gae(r, v, nv, term, trunc, gamma=gamma, lam=lam)
    expected = naive_gae(*_as_lists(r, v, nv, term, trunc), gamma, lam)
    torch.testing.assert_close(adv, expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ret - v, adv, rtol=1e-10, atol=1e-10)
    G = discounted_returns(r, term, trunc, gamma=gamma, bootstrap=nv)
    torch.testing.assert_close(G, naive_returns(*_as_lists(r, nv, term, trunc), gamma))


@settings(max_examples=30, deadline=None)
@given(
    T=st.integers(1, 12),
    N=st.integers(1, 4),
    seed=st.integers(0, 2**31 - 1),
    gamma=st.floats(0.0, 1.0),
    p_term=st.floats(0.0, 0.5),
    p_trunc=st.floats(0.0, 0.5),
)
def test_property_lambda_one_is_returns_minus_values(T, N, seed, gamma, p_term, p_trunc):
    r, v, nv, term, trunc = _random_rollout(T, N, seed, p_term, p_trunc, consistent=True)
    adv, ret = gae(r, v, nv, term, trunc, gamma=gamma, lam=1.0)
    G = discounted_returns(r, term, trunc, gamma=gamma, bootstrap=nv)
    torch.testing.assert_close(adv, G - v, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(ret, G, rtol=1e-9, atol=1e-9)
