"""Curvature back ends (K-FAC, diagonal, empirical) against dense, independent references."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from trustpg.core.curvature import (
    DiagonalDirection,
    EmpiricalDirection,
    NaturalDirection,
    empirical_fisher_product,
    exact_fisher_diagonal,
)
from trustpg.core.distributions import Categorical, DiagGaussian
from trustpg.core.fisher import fisher_matrix, fisher_quadratic
from trustpg.core.kfac import (
    KFACDirection,
    KFACPreconditionedCG,
    kron_solve,
    kronecker_factors,
    pi_damping,
    running_average,
)
from trustpg.core.layers import exact_output_grads, record_linears, sampled_output_grads
from trustpg.core.linalg import angle_degrees, flat_grad
from trustpg.core.rules import NPG, TRPO
from trustpg.core.update import PolicyBatch, surrogate

from ._policies import KINDS, make_batch, make_policy

DT = torch.float64


class LinearCategorical(nn.Module):
    """One Linear layer: logits = W s + b."""

    def __init__(self, obs_dim: int = 3, n: int = 4, bias: bool = True) -> None:
        super().__init__()
        self.fc = nn.Linear(obs_dim, n, bias=bias)

    def forward(self, obs: Tensor) -> Categorical:
        return Categorical(logits=self.fc(obs))


class LinearGaussian(nn.Module):
    """mean = W s + b, a state-independent log σ (a parameter K-FAC cannot factor)."""

    def __init__(self, obs_dim: int = 3, act: int = 2) -> None:
        super().__init__()
        self.fc = nn.Linear(obs_dim, act)
        self.log_std = nn.Parameter(torch.tensor([-0.3, 0.2]))

    def forward(self, obs: Tensor) -> DiagGaussian:
        return DiagGaussian(self.fc(obs), self.log_std)


def _kron_in_theta_order(A: Tensor, G: Tensor, layer: nn.Linear) -> Tensor:
    """The dense G ⊗ Ā of one Linear layer, rows/cols in θ's order (W row-major, then b)."""
    out, inp = layer.weight.shape
    cols = inp + (layer.bias is not None)
    order = [o * cols + i for o in range(out) for i in range(inp)]
    if layer.bias is not None:
        order += [o * cols + inp for o in range(out)]
    dense = torch.kron(G, A)  # index o·cols + i: row-major vec of g āᵀ
    idx = torch.tensor(order)
    return dense[idx][:, idx]


def _grad(policy: nn.Module, batch: PolicyBatch) -> Tensor:
    dist = policy(batch.obs)
    logp = dist.log_prob(batch.actions).detach()
    return flat_grad(surrogate(dist, batch, logp), policy.parameters())


@pytest.mark.parametrize("bias", [True, False])
def test_kfac_factors_of_one_linear_layer_and_one_state_equal_the_fisher(bias):
    torch.manual_seed(0)
    policy = LinearCategorical(bias=bias).double()
    obs = torch.randn(1, 3, dtype=DT)
    dist, records = record_linears(policy, obs)
    assert len(records) == 1
    A, G = kronecker_factors(records[0].inputs, exact_output_grads(dist, records)[0], 1)
    torch.testing.assert_close(_kron_in_theta_order(A, G, policy.fc), fisher_matrix(policy, obs))


def test_sampled_targets_estimate_the_true_fisher_factor():
    """G from actions drawn from π converges to the exact E_a[g gᵀ] (a Monte-Carlo estimate)."""
    torch.manual_seed(1)
    policy = LinearCategorical().double()
    obs = torch.randn(1, 3, dtype=DT).repeat(20_000, 1)
    dist, records = record_linears(policy, obs)
    _, G_exact = kronecker_factors(records[0].inputs, exact_output_grads(dist, records)[0], obs.shape[0])
    gen = torch.Generator().manual_seed(0)
    _, G_mc = kronecker_factors(records[0].inputs, sampled_output_grads(dist, records, gen)[0], obs.shape[0])
    assert float((G_mc - G_exact).norm() / G_exact.norm()) < 0.05
    assert not torch.allclose(G_mc, G_exact)  # it is an estimate, not the closed form


def test_factored_inverse_equals_the_dense_inverse():
    g = torch.Generator().manual_seed(3)
    a = torch.randn(50, 5, generator=g, dtype=DT)
    z = torch.randn(50, 3, generator=g, dtype=DT)
    A, G = kronecker_factors(a, z, 50)
    V = torch.randn(3, 5, generator=g, dtype=DT)
    lam_A, lam_G = pi_damping(A, G, 0.1)
    dense = torch.kron(G + lam_G * torch.eye(3, dtype=DT), A + lam_A * torch.eye(5, dtype=DT))
    expected = torch.linalg.solve(dense, V.reshape(-1)).reshape(3, 5)
    torch.testing.assert_close(kron_solve(A, G, V, lam_A, lam_G), expected)


def test_pi_damping_splits_lambda_by_the_factors_scales():
    A = torch.diag(torch.tensor([4.0, 4.0], dtype=DT))
    G = torch.diag(torch.tensor([1.0, 1.0, 1.0], dtype=DT))
    lam_A, lam_G = pi_damping(A, G, 0.09)
    assert lam_A * lam_G == pytest.approx(0.09)
    assert lam_A / lam_G == pytest.approx(4.0)  # π² = (tr A/2) / (tr G/3)


def test_running_average():
    old, new = torch.ones(2, 2, dtype=DT), 3 * torch.ones(2, 2, dtype=DT)
    torch.testing.assert_close(running_average(old, new, 0.9), 1.2 * torch.ones(2, 2, dtype=DT))
    assert running_average(None, new, 0.9) is new


@pytest.mark.parametrize("kind", KINDS)
def test_exact_diagonal_equals_the_diagonal_of_the_dense_fisher(kind):
    policy = make_policy(kind, 0)
    obs = make_batch(policy, 40, seed=2).obs
    torch.testing.assert_close(exact_fisher_diagonal(policy, obs), torch.diagonal(fisher_matrix(policy, obs)))


def test_exact_diagonal_covers_parameters_outside_linear_layers():
    torch.manual_seed(2)
    policy = LinearGaussian().double()
    obs = torch.randn(30, 3, dtype=DT)
    torch.testing.assert_close(exact_fisher_diagonal(policy, obs), torch.diagonal(fisher_matrix(policy, obs)))


@pytest.mark.parametrize("kind", KINDS)
def test_empirical_fisher_product_equals_a_per_sample_loop(kind):
    policy = make_policy(kind, 0)
    batch = make_batch(policy, 25, seed=4)
    params = list(policy.parameters())
    scores = [flat_grad(policy(batch.obs[i : i + 1]).log_prob(batch.actions[i : i + 1]).sum(), params)
              for i in range(25)]  # fmt: skip
    F_emp = sum(torch.outer(s, s) for s in scores) / 25
    v = torch.randn(len(scores[0]), dtype=DT, generator=torch.Generator().manual_seed(5))
    product = empirical_fisher_product(policy, batch.obs, batch.actions, damping=0.2)
    torch.testing.assert_close(product(v), F_emp @ v + 0.2 * v)


@pytest.mark.parametrize("kind", KINDS)
def test_fisher_quadratic_equals_the_dense_form(kind):
    policy = make_policy(kind, 0)
    obs = make_batch(policy, 30, seed=6).obs
    F = fisher_matrix(policy, obs)
    v = torch.randn(F.shape[0], dtype=DT, generator=torch.Generator().manual_seed(7))
    assert fisher_quadratic(policy, obs, v, damping=0.3) == pytest.approx(
        float(v @ F @ v + 0.3 * v @ v), rel=1e-10
    )


def test_kfac_direction_on_one_linear_layer_is_the_damped_kronecker_solve():
    """With exact targets and no running average, K-FAC's g̃ is ((G+λ_G I)⊗(Ā+λ_A I))⁻¹ g."""
    torch.manual_seed(3)
    policy = LinearCategorical().double()
    batch = make_batch(policy, 1, seed=8)
    g = _grad(policy, batch)
    sol = KFACDirection(damping=0.1, decay=0.0, targets="exact", angle_states=0).solve(policy, batch, g)
    F = fisher_matrix(policy, batch.obs)
    A, G = kronecker_factors(*_factors_of(policy, batch.obs))
    lam_A, lam_G = pi_damping(A, G, 0.1)
    damped = _kron_in_theta_order(A + lam_A * torch.eye(A.shape[0], dtype=DT),
                                  G + lam_G * torch.eye(G.shape[0], dtype=DT), policy.fc)  # fmt: skip
    torch.testing.assert_close(sol.x, torch.linalg.solve(damped, g))
    assert sol.xFx == pytest.approx(float(sol.x @ (F + 0.1 * torch.eye(len(g), dtype=DT)) @ sol.x))
    assert math.isnan(sol.ng_angle)


def _factors_of(policy: nn.Module, obs: Tensor) -> tuple[Tensor, Tensor, int]:
    dist, records = record_linears(policy, obs)
    return records[0].inputs, exact_output_grads(dist, records)[0], obs.shape[0]


BACKENDS = {
    "kfac": lambda: KFACDirection(seed=0),
    "kfac-cg": lambda: KFACPreconditionedCG(KFACDirection(seed=0), cg_iters=3),
    "diagonal": lambda: DiagonalDirection(),
    "empirical": lambda: EmpiricalDirection(),
    "cg": lambda: NaturalDirection(),
}


@pytest.mark.parametrize("name", list(BACKENDS))
@pytest.mark.parametrize("kind", KINDS)
def test_every_back_end_points_within_90_degrees_of_g(kind, name):
    policy = make_policy(kind, 0)
    batch = make_batch(policy, 64, seed=1)
    g = _grad(policy, batch)
    sol = BACKENDS[name]().solve(policy, batch, g)
    assert float(sol.x @ g) > 0 and angle_degrees(sol.x, g) < 90.0
    assert sol.xFx > 0 and sol.seconds > 0
    if name == "cg":
        assert math.isnan(sol.ng_angle)
    else:  # the diagnostic: compared with the exact natural gradient on these 64 states
        F = fisher_matrix(policy, batch.obs)
        exact = torch.linalg.solve(F + 0.1 * torch.eye(len(g), dtype=DT), g)
        assert sol.ng_angle == pytest.approx(angle_degrees(sol.x, exact), abs=1e-3)


@pytest.mark.parametrize("name", ["kfac", "kfac-cg", "diagonal", "empirical"])
@pytest.mark.parametrize("rule", ["npg", "trpo"])
def test_rules_step_with_each_back_end(rule, name):
    policy = make_policy("gaussian", 0)
    batch = make_batch(policy, 64, seed=1)
    direction = BACKENDS[name]()
    r = TRPO(max_kl=0.01, direction=direction) if rule == "trpo" else NPG(max_kl=0.01, direction=direction)
    stats = r.update(policy, batch)
    assert not stats.skipped
    assert 0 < stats.measured_kl <= (0.01 if rule == "trpo" else 1.0)
    assert stats.solve_seconds > 0 and 0 <= stats.ng_angle < 90
    assert stats.predicted_kl == pytest.approx(0.01 * 0.8 ** (2 * stats.backtracks), rel=1e-9)


def test_kfac_state_round_trip_continues_bit_exactly():
    policy = make_policy("gaussian", 0)
    batches = [make_batch(policy, 64, seed=s) for s in (1, 2, 3)]
    a = KFACDirection(seed=4, angle_states=0)
    for b in batches[:2]:
        a.solve(policy, b, _grad(policy, b))
    saved = a.state_dict()
    assert set(saved["state"]) == {0, 1, 2} and saved["state"][2]["updates"] == 2
    b_dir = KFACDirection(seed=4, angle_states=0)
    b_dir.load_state_dict(saved)
    g = _grad(policy, batches[2])
    assert torch.equal(a.solve(policy, batches[2], g).x, b_dir.solve(policy, batches[2], g).x)
    fresh = KFACDirection(seed=4, angle_states=0)
    assert not torch.equal(fresh.solve(policy, batches[2], g).x, b_dir.solve(policy, batches[2], g).x)
    assert KFACDirection().state_dict() == {}


@pytest.mark.parametrize("kind", KINDS)
def test_kfac_preconditioned_cg_starts_along_kfac_and_converges_to_the_dense_solve(kind):
    """One iteration: along K-FAC's K⁻¹g (PCG's first step is the line minimiser along M⁻¹b);
    enough iterations: (F + λI)⁻¹g from the dense Fisher, as cg, with x̃ᵀ(F + λI)x̃ exact."""
    policy = make_policy(kind, 0)
    batch = make_batch(policy, 32, seed=5)
    g = _grad(policy, batch)
    kfac = KFACDirection(decay=0.0, seed=1, angle_states=0).solve(policy, batch, g).x
    one = KFACPreconditionedCG(KFACDirection(decay=0.0, seed=1, angle_states=0), cg_iters=1)
    x1 = one.solve(policy, batch, g).x
    assert angle_degrees(x1, kfac) < 1e-4 and float(x1 @ kfac) > 0
    F = fisher_matrix(policy, batch.obs) + 0.1 * torch.eye(len(g), dtype=DT)
    exact = torch.linalg.solve(F, g)
    many = KFACPreconditionedCG(KFACDirection(seed=1, angle_states=0), cg_iters=len(g), cg_tol=1e-28)
    sol = many.solve(policy, batch, g)
    torch.testing.assert_close(sol.x, exact, rtol=1e-6, atol=1e-8)
    assert sol.xFx == pytest.approx(float(exact @ F @ exact), rel=1e-6)


def test_kfac_preconditioned_cg_keeps_its_factors_in_the_rule_state():
    policy = make_policy("gaussian", 0)
    batches = [make_batch(policy, 64, seed=s) for s in (1, 2)]
    a = KFACPreconditionedCG(KFACDirection(seed=4, angle_states=0))
    a.solve(policy, batches[0], _grad(policy, batches[0]))
    b = KFACPreconditionedCG(KFACDirection(seed=4, angle_states=0))
    b.load_state_dict(a.state_dict())
    assert a.state_dict()["state"][2]["updates"] == 1
    g = _grad(policy, batches[1])
    assert torch.equal(a.solve(policy, batches[1], g).x, b.solve(policy, batches[1], g).x)


def test_kfac_state_is_shared_by_a_rule_with_another_kl_budget():
    rule = TRPO(direction=KFACDirection(angle_states=0))
    policy = make_policy("categorical", 0)
    rule.with_kl_budget(0.005).update(policy, make_batch(policy, 64, seed=1))
    assert rule.state_dict()["state"][2]["updates"] == 1


def test_config_chooses_the_back_end_and_the_distance():
    from trustpg.config.presets import preset_overrides
    from trustpg.config.train_config import TrainConfig
    from trustpg.train.trainer import make_rule

    rule = make_rule(TrainConfig(curvature="kfac", kl="max", seed=3, kfac_decay=0.5, ng_angle_states=7))
    assert isinstance(rule, TRPO) and rule.kl == "max"
    assert rule.direction == KFACDirection(damping=0.1, decay=0.5, angle_states=7, seed=3)
    npg = make_rule(TrainConfig(algo="npg", curvature="empirical"))
    assert isinstance(npg, NPG) and isinstance(npg.direction, EmpiricalDirection)
    assert isinstance(make_rule(TrainConfig(curvature="diagonal")).direction, DiagonalDirection)  # type: ignore[attr-defined]
    pcg = make_rule(TrainConfig(curvature="kfac-cg", pcg_iters=4, seed=2)).direction  # type: ignore[attr-defined]
    assert pcg == KFACPreconditionedCG(KFACDirection(damping=0.1, angle_states=0, seed=2), cg_iters=4)
    # a preset's cg_iters (25 for HalfCheetah) is plain CG's; kfac-cg keeps its own few iterations
    preset = preset_overrides("mujoco", "HalfCheetah-v5")
    hc = TrainConfig(env="HalfCheetah-v5", curvature="kfac-cg", **preset)
    assert hc.cg_iters == 25 and make_rule(hc).direction.cg_iters == 5  # type: ignore[attr-defined]
    assert isinstance(make_rule(TrainConfig()).direction, NaturalDirection)  # type: ignore[attr-defined]
    for bad in ({"kfac_decay": 1.0}, {"ng_angle_states": -1}, {"curvature": "lbfgs"}, {"kl": "median"},
                {"pcg_iters": 0}):  # fmt: skip
        with pytest.raises((ValueError, TypeError)):
            TrainConfig(**bad)  # type: ignore[arg-type]


def test_the_angle_diagnostic_is_off_by_default_and_says_how_to_turn_it_on(caplog):
    """It costs a 50-iteration CG per update (more than kfac saves), so training leaves it off."""
    import logging

    from trustpg.config.train_config import TrainConfig
    from trustpg.train.build import make_rule

    with caplog.at_level(logging.INFO, logger="trustpg"):
        rule = make_rule(TrainConfig(curvature="kfac"))
    assert rule.direction.angle_states == 0  # type: ignore[attr-defined]
    assert "--ng-angle-states 1024" in caplog.text
    policy = make_policy("gaussian", 0)
    stats = rule.update(policy, make_batch(policy, 64, seed=1))
    assert math.isnan(stats.ng_angle) and not stats.skipped
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="trustpg"):
        make_rule(TrainConfig(curvature="cg"))
        make_rule(TrainConfig(curvature="kfac", ng_angle_states=64))
    assert "--ng-angle-states" not in caplog.text
