"""Advantage estimation as pure functions over ``[T, N]`` arrays (T steps, N envs)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def _check(rewards: Tensor, *others: Tensor) -> None:
    if rewards.dim() != 2:
        raise ValueError(f"expected [T, N] arrays, got rewards of shape {tuple(rewards.shape)}")
    for o in others:
        if o.shape != rewards.shape:
            raise ValueError(f"shape mismatch: {tuple(o.shape)} vs {tuple(rewards.shape)}")


def gae(
    rewards: Tensor,
    values: Tensor,
    next_values: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    *,
    gamma: float,
    lam: float,
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation, GAE(γ, λ) (Schulman et al. 2016, eq. 16).

        δ_t = r_t + γ (1 − terminated_t) V(s_{t+1}) − V(s_t)
        Â_t = δ_t + γ λ (1 − done_t) Â_{t+1},   done_t = terminated_t or truncated_t

    At a truncation (time limit) the episode did not end: V(s_{t+1}) of the *final*
    observation is bootstrapped. At a termination the value of what follows is zero. In both
    cases the recursion does not cross into the next episode. The last row (t = T−1) is cut by
    the rollout's end and bootstraps from ``next_values`` like a truncation.

    Args:
        rewards: r_t, ``[T, N]``.
        values: V(s_t), ``[T, N]``.
        next_values: V(s_{t+1}), ``[T, N]``; at a truncated step this must be V of the final
            observation (not of the reset observation that follows it); ignored where terminated.
        terminated, truncated: boolean or {0, 1}, ``[T, N]``.
        gamma: discount γ ∈ [0, 1].
        lam: λ ∈ [0, 1]; λ = 0 gives the TD errors δ_t, λ = 1 the discounted returns minus V.
    Returns:
        (advantages Â, returns Â + V), each ``[T, N]``.
    """
    _check(rewards, values, next_values, terminated, truncated)
    not_term = 1.0 - terminated.to(rewards.dtype)
    not_done = not_term * (1.0 - truncated.to(rewards.dtype))
    deltas = rewards + gamma * not_term * next_values - values
    coef = gamma * lam * not_done
    if deltas.requires_grad or deltas.device.type != "cpu":
        adv = torch.empty_like(rewards)
        running = torch.zeros_like(rewards[0])
        for t in range(rewards.shape[0] - 1, -1, -1):
            running = deltas[t] + coef[t] * running
            adv[t] = running
        return adv, adv + values
    # The same float operations on NumPy rows: the recursion is T tiny steps, where NumPy's
    # per-call cost is a fraction of PyTorch's (2.3 ms -> 0.27 ms for Hopper's 256 x 8 batch).
    d, c = deltas.numpy(), coef.numpy()
    out = np.empty_like(d)
    running = np.zeros_like(d[0])
    for t in range(d.shape[0] - 1, -1, -1):
        running = d[t] + c[t] * running
        out[t] = running
    adv = torch.from_numpy(out)
    return adv, adv + values


def discounted_returns(
    rewards: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    *,
    gamma: float,
    bootstrap: Tensor | None = None,
) -> Tensor:
    """G_t = Σ_k γ^k r_{t+k} within each episode, ``[T, N]``.

    ``bootstrap`` ([T, N], optional) is added at truncated steps and at the last row as
    γ·V(s_{t+1}); without it, returns are cut there.
    """
    _check(rewards, terminated, truncated)
    not_done = (1.0 - terminated.to(rewards.dtype)) * (1.0 - truncated.to(rewards.dtype))
    boot = torch.zeros_like(rewards) if bootstrap is None else bootstrap
    cut = truncated.to(rewards.dtype) * (1.0 - terminated.to(rewards.dtype))
    out = torch.empty_like(rewards)
    running = boot[-1].clone()
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = rewards[t] + gamma * (not_done[t] * running + cut[t] * boot[t])
        out[t] = running
    return out


def normalize(x: Tensor, eps: float = 1e-8) -> Tensor:
    """(x − mean) / (std + eps) over all elements; used for advantages."""
    return (x - x.mean()) / (x.std(unbiased=False) + eps)
