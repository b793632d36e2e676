"""Fitting the critic V_φ(s) to the λ-returns by minibatch regression."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def fit_value(
    critic: nn.Module,
    optimizer: torch.optim.Optimizer,
    obs: Tensor,
    returns: Tensor,
    *,
    epochs: int,
    minibatch_size: int,
    generator: torch.Generator,
) -> tuple[float, float]:
    """Minimise mean (V_φ(s) − R)² with ``epochs`` shuffled passes of minibatches.

    Args:
        obs: states ``[B, D]``; returns: regression targets ``[B]`` (GAE λ-returns Â + V).
        generator: the only source of randomness (minibatch order).
    Returns:
        (loss before fitting, loss after fitting), full-batch mean squared errors.
    """
    with torch.no_grad():
        before = float((critic(obs) - returns).pow(2).mean())
    n = obs.shape[0]
    for _ in range(epochs):
        perm = torch.randperm(n, generator=generator)
        for start in range(0, n, minibatch_size):
            idx = perm[start : start + minibatch_size]
            loss = (critic(obs[idx]) - returns[idx]).pow(2).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        after = float((critic(obs) - returns).pow(2).mean())
    return before, after
