"""Conjugate gradient, flat parameter views and angles."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from trustpg.core.linalg import (
    CG_ITERS,
    angle_degrees,
    conjugate_gradient,
    flat_grad,
    flat_params,
    set_flat_params,
)

DT = torch.float64


def _spd(n: int, seed: int, eps: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(n, n, generator=g, dtype=DT) / math.sqrt(n)
    return m @ m.T + eps * torch.eye(n, dtype=DT)


def _vec(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=DT)


@pytest.mark.parametrize("n", [1, 2, 5, 20, 50])
def test_cg_matches_solve_within_n_iterations(n):
    A, b = _spd(n, seed=n), _vec(n, seed=100 + n)
    res = conjugate_gradient(lambda v: A @ v, b, iters=n, tol=1e-24)
    assert res.status == "converged"
    assert 1 <= res.iterations <= n
    torch.testing.assert_close(res.x, torch.linalg.solve(A, b), rtol=1e-9, atol=1e-11)
    # The reported residual is ‖b − Ax‖ (up to round-off).
    assert res.residual <= 1e-11
    assert float((b - A @ res.x).norm()) <= 1e-10


def test_cg_is_deterministic_from_zero():
    A, b = _spd(8, seed=1), _vec(8, seed=2)
    r1 = conjugate_gradient(lambda v: A @ v, b, iters=3)
    r2 = conjugate_gradient(lambda v: A @ v, b, iters=3)
    assert torch.equal(r1.x, r2.x)
    assert (r1.residual, r1.iterations, r1.status) == (r2.residual, r2.iterations, r2.status)


def test_cg_first_iterate_is_along_b():
    """From x₀ = 0 one iteration gives the exact line minimiser (bᵀb / bᵀAb) b."""
    A, b = _spd(6, seed=3), _vec(6, seed=4)
    res = conjugate_gradient(lambda v: A @ v, b, iters=1, tol=0.0)
    assert res.status == "max_iters" and res.iterations == 1
    torch.testing.assert_close(res.x, (b @ b) / (b @ A @ b) * b, rtol=1e-12, atol=0)


def test_cg_stops_early_on_tolerance():
    # Two distinct eigenvalues: exact in 2 iterations, whatever the size.
    A = torch.diag(torch.tensor([1.0, 1.0, 1.0, 5.0, 5.0, 5.0], dtype=DT))
    b = _vec(6, seed=5)
    calls = []

    def Av(v):
        calls.append(1)
        return A @ v

    res = conjugate_gradient(Av, b, iters=6, tol=1e-20)
    assert res.status == "converged"
    assert res.iterations == 2
    assert len(calls) == 2
    torch.testing.assert_close(res.x, b / torch.diag(A), rtol=1e-12, atol=1e-14)
    # The identity: one iteration.
    res = conjugate_gradient(lambda v: v, b, iters=10, tol=1e-20)
    assert (res.status, res.iterations) == ("converged", 1)
    torch.testing.assert_close(res.x, b, rtol=1e-14, atol=0)
    # A relative tolerance of 1 or more accepts x₀ = 0 (‖r₀‖ = ‖b‖) without any product.
    res = conjugate_gradient(Av, b, iters=10, tol=1.0)
    assert (res.status, res.iterations) == ("converged", 0)
    assert torch.equal(res.x, torch.zeros_like(b))


def test_cg_tolerance_is_relative_so_scaling_b_scales_x_and_the_iterations_stay():
    """Scaling the right-hand side (the gradient, by the advantages' scale) by k scales the solution
    by k and stops CG at the same iteration: with an absolute tolerance a small g stopped CG at
    x = 0 (an update skipped as "non-positive g̃ᵀFg̃") and the scale moved where CG stopped."""
    A, b = _spd(30, seed=6, eps=1e-2), _vec(30, seed=7)
    base = conjugate_gradient(lambda v: A @ v, b, iters=60, tol=1e-12)
    assert base.status == "converged" and 0 < base.iterations < 60
    for k in (2.0**-20, 2.0**-10, 2.0**13):  # powers of two: every product and ratio scales exactly
        res = conjugate_gradient(lambda v: A @ v, k * b, iters=60, tol=1e-12)
        assert (res.status, res.iterations) == (base.status, base.iterations), k
        assert torch.equal(res.x, k * base.x), k


def test_cg_reports_max_iters():
    A, b = _spd(30, seed=6, eps=1e-3), _vec(30, seed=7)
    res = conjugate_gradient(lambda v: A @ v, b, iters=3, tol=1e-30)
    assert res.status == "max_iters"
    assert res.iterations == 3
    # The residual reported is the true one of the returned x.
    assert res.residual == pytest.approx(float((b - A @ res.x).norm()), rel=1e-8)
    assert res.residual > 1e-6


def test_cg_default_iterations():
    A, b = _spd(40, seed=8, eps=1e-4), _vec(40, seed=9)
    res = conjugate_gradient(lambda v: A @ v, b)
    assert res.iterations == CG_ITERS == 10


def test_cg_negative_definite_breaks_down():
    A, b = -_spd(5, seed=10), _vec(5, seed=11)
    res = conjugate_gradient(lambda v: A @ v, b, iters=10)
    assert res.status == "breakdown"
    assert res.iterations == 0
    assert torch.equal(res.x, torch.zeros(5, dtype=DT))


def test_cg_indefinite_breaks_down_with_last_good_iterate():
    """A = diag(1, −1), b = (2, 1): first step has pᵀAp = 3 > 0 and gives x = (5/3)·b;
    the next direction p = (20/9, 40/9) has pᵀAp = −1200/81 < 0."""
    A = torch.diag(torch.tensor([1.0, -1.0], dtype=DT))
    b = torch.tensor([2.0, 1.0], dtype=DT)
    res = conjugate_gradient(lambda v: A @ v, b, iters=10)
    assert res.status == "breakdown"
    assert res.iterations == 1
    assert torch.isfinite(res.x).all()
    torch.testing.assert_close(res.x, torch.tensor([10 / 3, 5 / 3], dtype=DT))
    # Zero curvature along b also breaks down at once.
    res = conjugate_gradient(lambda v: A @ v, torch.tensor([1.0, 1.0], dtype=DT))
    assert (res.status, res.iterations) == ("breakdown", 0)


def test_cg_non_finite_curvature_breaks_down():
    b = _vec(3, seed=12)
    res = conjugate_gradient(lambda v: v * float("nan"), b)
    assert res.status == "breakdown"
    assert torch.isfinite(res.x).all()


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_cg_non_finite_rhs_breaks_down(bad):
    A = _spd(4, seed=13)
    b = _vec(4, seed=14)
    b[2] = bad
    res = conjugate_gradient(lambda v: A @ v, b)
    assert res.status == "breakdown"
    assert res.iterations == 0
    assert torch.isfinite(res.x).all()


@pytest.mark.parametrize("iters", [0, -1])
def test_cg_rejects_fewer_than_one_iteration(iters):
    with pytest.raises(ValueError):
        conjugate_gradient(lambda v: v, torch.ones(3, dtype=DT), iters=iters)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 12),
    seed=st.integers(0, 2**31 - 1),
    eps=st.floats(0.05, 10.0),
    scale=st.floats(1e-3, 1e3),
)
def test_property_cg_solves_spd(n, seed, eps, scale):
    A = _spd(n, seed, eps) * scale
    b = _vec(n, seed + 1)
    res = conjugate_gradient(lambda v: A @ v, b, iters=3 * n, tol=1e-24)
    assert res.status == "converged"
    x = torch.linalg.solve(A, b)
    assert float((res.x - x).norm()) <= 1e-7 * float(x.norm())


# ---------------------------------------------------------------------------------------------
# Preconditioned CG (Nocedal & Wright Alg. 5.3).
# ---------------------------------------------------------------------------------------------


def _ill_conditioned(n: int, seed: int) -> torch.Tensor:
    """SPD with eigenvalues spread over six decades: plain CG needs many iterations."""
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=DT))
    return q @ torch.diag(torch.logspace(-3, 3, n, dtype=DT)) @ q.T


@pytest.mark.parametrize("n", [1, 5, 30])
def test_pcg_with_the_exact_inverse_solves_in_one_iteration(n):
    A, b = _ill_conditioned(n, n), _vec(n, 7)
    res = conjugate_gradient(
        lambda v: A @ v, b, iters=5, tol=1e-12, precondition=lambda r: torch.linalg.solve(A, r)
    )
    torch.testing.assert_close(res.x, torch.linalg.solve(A, b), rtol=1e-8, atol=1e-10)
    assert res.iterations == 1 and res.status == "converged"


def test_pcg_beats_plain_cg_with_a_good_preconditioner_and_reaches_the_same_solution():
    """A = D + low rank, M = D: PCG converges in ~rank+1 iterations, plain CG does not."""
    n = 40
    gen = torch.Generator().manual_seed(3)
    d = torch.logspace(-3, 3, n, dtype=DT)
    u = torch.randn(n, 2, generator=gen, dtype=DT)
    A = torch.diag(d) + u @ u.T
    b = _vec(n, 9)
    exact = torch.linalg.solve(A, b)
    plain = conjugate_gradient(lambda v: A @ v, b, iters=4, tol=0.0)
    pre = conjugate_gradient(lambda v: A @ v, b, iters=4, tol=0.0, precondition=lambda r: r / d)
    err = lambda x: float((x - exact).norm() / exact.norm())  # noqa: E731
    assert err(pre.x) < 1e-8 < 0.1 < err(plain.x)
    full = conjugate_gradient(lambda v: A @ v, b, iters=200, tol=1e-24, precondition=lambda r: r / d)
    torch.testing.assert_close(full.x, exact, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(pre.Ax, A @ pre.x)  # A x without another product, as plain CG


def test_pcg_first_iterate_is_along_the_preconditioned_b():
    A, b = _spd(6, seed=3), _vec(6, seed=4)
    d = torch.diag(A)
    res = conjugate_gradient(lambda v: A @ v, b, iters=1, tol=0.0, precondition=lambda r: r / d)
    y = b / d
    torch.testing.assert_close(res.x, (b @ y) / (y @ A @ y) * y)


def test_pcg_with_the_identity_is_plain_cg_bit_for_bit():
    A, b = _ill_conditioned(20, 1), _vec(20, 2)
    plain = conjugate_gradient(lambda v: A @ v, b, iters=7)
    ident = conjugate_gradient(lambda v: A @ v, b, iters=7, precondition=lambda r: r.clone())
    assert torch.equal(plain.x, ident.x) and plain.iterations == ident.iterations == 7


@pytest.mark.parametrize("bad", [lambda r: -r, lambda r: r * float("nan")])
def test_pcg_with_a_preconditioner_that_is_not_pd_breaks_down(bad):
    A, b = _spd(5, seed=1), _vec(5, seed=2)
    res = conjugate_gradient(lambda v: A @ v, b, iters=5, precondition=bad)
    assert res.status == "breakdown" and res.iterations == 0 and torch.equal(res.x, torch.zeros_like(b))


# ---------------------------------------------------------------------------------------------
# Flat parameters.
# ---------------------------------------------------------------------------------------------


def _module(dtype=DT) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_flat_params_round_trip_is_bit_exact(dtype):
    m = _module(dtype)
    before = [p.detach().clone() for p in m.parameters()]
    theta = flat_params(m)
    assert theta.shape == (3 * 4 + 4 + 4 * 2 + 2,)
    assert theta.dtype == dtype
    assert not theta.requires_grad
    # Perturb, then write θ back: every parameter is bit-identical to before.
    set_flat_params(m, theta + 0.123)
    assert not torch.equal(flat_params(m), theta)
    set_flat_params(m, theta)
    assert torch.equal(flat_params(m), theta)
    for p, q in zip(m.parameters(), before, strict=True):
        assert torch.equal(p, q)
        assert p.dtype == dtype
        assert isinstance(p, nn.Parameter) and p.requires_grad


def test_flat_params_is_a_copy():
    m = _module()
    theta = flat_params(m)
    theta.add_(1.0)
    assert not torch.equal(flat_params(m), theta)


def test_set_flat_params_copies_the_vector():
    """Writing θ must not make the module alias the caller's vector: changing the vector
    afterwards must leave the module alone."""
    m = _module()
    theta = flat_params(m)
    set_flat_params(m, theta)
    theta.add_(1.0)
    torch.testing.assert_close(flat_params(m), theta - 1.0, rtol=0, atol=1e-15)
    # ... and an in-place change of the module (an optimizer step) leaves the vector alone.
    saved = theta.clone()
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(2.0)
    assert torch.equal(theta, saved)


def test_set_flat_params_keeps_the_module_dtype():
    m = _module(torch.float32)
    set_flat_params(m, flat_params(m).double())
    assert all(p.dtype == torch.float32 for p in m.parameters())


def test_set_flat_params_keeps_parameter_identity_for_optimizers():
    m = _module()
    params = list(m.parameters())
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    set_flat_params(m, flat_params(m) * 0.5)
    assert all(p is q for p, q in zip(m.parameters(), params, strict=True))
    theta = flat_params(m)
    m(torch.ones(1, 3, dtype=DT)).sum().backward()
    grad = torch.cat([p.grad.reshape(-1) for p in m.parameters()])
    opt.step()
    torch.testing.assert_close(flat_params(m), theta - 0.5 * grad)


def test_flat_grad_order_and_unused_parameters():
    m = _module()
    x = torch.ones(2, 3, dtype=DT)
    out = m[0](x).sum()  # the second layer is unused
    g = flat_grad(out, m.parameters())
    n0 = 3 * 4 + 4
    assert g.shape == flat_params(m).shape
    torch.testing.assert_close(g[: 3 * 4], torch.full((12,), 2.0, dtype=DT))  # dW = Σ_b x
    torch.testing.assert_close(g[12:n0], torch.full((4,), 2.0, dtype=DT))  # db = B
    assert torch.equal(g[n0:], torch.zeros(10, dtype=DT))


# ---------------------------------------------------------------------------------------------
# Angles.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("u", "v", "deg"),
    [
        ([1.0, 0.0], [0.0, 1.0], 90.0),
        ([1.0, 0.0], [1.0, 1.0], 45.0),
        ([1.0, 0.0], [-1.0, 0.0], 180.0),
        ([2.0, 2.0], [3.0, 3.0], 0.0),
        ([1.0, 0.0], [1.0, math.sqrt(3.0)], 60.0),
        ([1.0, 0.0, 0.0], [-1.0, 1.0, 0.0], 135.0),
    ],
)
def test_angle_degrees_known_vectors(u, v, deg):
    got = angle_degrees(torch.tensor(u, dtype=DT), torch.tensor(v, dtype=DT))
    assert got == pytest.approx(deg, abs=1e-6)


def test_angle_degrees_zero_vector_is_nan():
    assert math.isnan(angle_degrees(torch.zeros(3), torch.ones(3)))
    assert math.isnan(angle_degrees(torch.ones(3), torch.zeros(3)))


def test_angle_degrees_is_symmetric_and_scale_invariant():
    u, v = _vec(7, 1), _vec(7, 2)
    a = angle_degrees(u, v)
    assert a == pytest.approx(angle_degrees(v, u), abs=1e-9)
    assert a == pytest.approx(angle_degrees(3.0 * u, 0.1 * v), abs=1e-9)
    cos = float(u @ v / (u.norm() * v.norm()))
    assert a == pytest.approx(math.degrees(math.acos(cos)), abs=1e-9)
    assert np.isfinite(a)


@pytest.mark.parametrize(("n", "iters"), [(1, 1), (5, 2), (20, 3), (50, 10), (50, 60)])
def test_cg_returns_a_times_x_without_another_product(n, iters):
    """CGResult.Ax (accumulated from CG's own products) equals A @ x, converged or not, and CG
    calls the product once per iteration only."""
    A, b = _spd(n, seed=n), _vec(n, seed=7 + n)
    calls = []
    res = conjugate_gradient(lambda v: calls.append(1) or A @ v, b, iters=iters, tol=1e-24)
    assert len(calls) == res.iterations
    torch.testing.assert_close(res.Ax, A @ res.x, rtol=1e-9, atol=1e-11)
    # float32, as in training: the accumulated product stays as close as a direct one
    A32, b32 = A.float(), b.float()
    res = conjugate_gradient(lambda v: A32 @ v, b32, iters=iters)
    torch.testing.assert_close(res.Ax, A32 @ res.x, rtol=1e-4, atol=1e-4)


def test_cg_a_times_x_at_breakdown_is_that_of_the_last_good_iterate():
    A = torch.diag(torch.tensor([1.0, -1.0], dtype=DT))
    res = conjugate_gradient(lambda v: A @ v, torch.tensor([2.0, 1.0], dtype=DT), iters=10)
    assert res.status == "breakdown"
    torch.testing.assert_close(res.Ax, A @ res.x)
