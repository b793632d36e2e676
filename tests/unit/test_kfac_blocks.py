"""K-FAC on a policy of several layers: the block-diagonal inverse against a dense solve.

The one-layer tests (test_curvature.py) check a single Kronecker block; here every Linear layer
of a two-layer MLP gets its own damped block, a Gaussian's log σ its exact Fisher diagonal, and
``KFACDirection`` must place each at its parameters' slice of θ (weights row-major, then bias)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from trustpg.core.fisher import fisher_matrix
from trustpg.core.kfac import KFACDirection, kronecker_factors, pi_damping
from trustpg.core.layers import exact_output_grads, param_slices, record_linears
from trustpg.core.linalg import flat_grad
from trustpg.core.update import surrogate

from ._policies import KINDS, make_batch, make_policy

DT = torch.float64


def _layer_index(policy: torch.nn.Module, layer: torch.nn.Linear) -> Tensor:
    """θ indices of ``layer`` in the order of vec(W̄), W̄ = [W b] row-major: row o is W[o, :], b[o]."""
    where = param_slices(policy)
    w = torch.arange(where[id(layer.weight)].start, where[id(layer.weight)].stop).view(layer.weight.shape)
    b = torch.arange(where[id(layer.bias)].start, where[id(layer.bias)].stop).view(-1, 1)
    return torch.cat([w, b], dim=1).reshape(-1)


def _dense_kfac(policy: torch.nn.Module, obs: Tensor, damping: float | None) -> Tensor:
    """The (damped) block-diagonal K-FAC matrix, assembled densely: torch.kron per layer at its
    indices, and the exact Fisher diagonal (+ λ) for the other parameters."""
    dist, records = record_linears(policy, obs)
    grads = exact_output_grads(dist, records)
    n = sum(p.numel() for p in policy.parameters())
    K = torch.zeros(n, n, dtype=DT)
    covered = torch.zeros(n, dtype=torch.bool)
    for r, gz in zip(records, grads):
        A, G = kronecker_factors(r.inputs, gz, obs.shape[0])
        if damping is not None:
            lam_A, lam_G = pi_damping(A, G, damping)
            A, G = A + lam_A * torch.eye(A.shape[0], dtype=DT), G + lam_G * torch.eye(G.shape[0], dtype=DT)
        idx = _layer_index(policy, r.module)
        K[idx[:, None], idx[None, :]] = torch.kron(G, A)
        covered[idx] = True
    rest = (~covered).nonzero().squeeze(-1)
    F = fisher_matrix(policy, obs)  # the dense Fisher, an independent reference
    K[rest, rest] = F[rest, rest] + (damping or 0.0)
    return K


@pytest.mark.parametrize("kind", KINDS)
def test_kfac_direction_of_a_two_layer_policy_equals_the_dense_block_diagonal_solve(kind):
    policy = make_policy(kind, 0, hidden=5)
    batch = make_batch(policy, 40, seed=2)
    dist = policy(batch.obs)
    g = flat_grad(surrogate(dist, batch, dist.log_prob(batch.actions).detach()), policy.parameters())
    sol = KFACDirection(damping=0.1, decay=0.0, targets="exact", angle_states=0).solve(policy, batch, g)
    dense = _dense_kfac(policy, batch.obs, damping=0.1)
    torch.testing.assert_close(sol.x, torch.linalg.solve(dense, g), rtol=1e-9, atol=1e-12)
    assert len(record_linears(policy, batch.obs)[1]) == 2  # really two blocks


@pytest.mark.parametrize("kind", KINDS)
def test_on_one_state_each_undamped_block_equals_the_fishers_diagonal_block(kind):
    """For one state E[āāᵀ ⊗ ggᵀ] = āāᵀ ⊗ E[ggᵀ]: the Kronecker factorisation is exact per
    layer, so each block equals the dense Fisher's block (the hidden layer's G through tanh)."""
    policy = make_policy(kind, 1, hidden=5)
    obs = make_batch(policy, 1, seed=3).obs
    F, K = fisher_matrix(policy, obs), _dense_kfac(policy, obs, damping=None)
    mask = K != 0
    torch.testing.assert_close(K[mask], F[mask], rtol=1e-9, atol=1e-12)
    off = ~mask  # what block-diagonal K-FAC drops: the cross-layer blocks, not zero in F
    assert float(F[off].abs().max()) > 1e-3
