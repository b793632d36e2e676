"""Running moments of a stream of samples: count, mean and population variance, and Chan, Golub &
LeVeque's (1979) merge of two batches' moments. Used by the observation and reward normalisers
(:mod:`trustpg.sampling.rollout`) and by the Ray sampler, which merges its workers' moments."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


class RunningMeanStd:
    """Running mean and variance over a stream of batches (Chan et al. 1979 parallel update)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.mean = np.zeros(shape, np.float64)
        self.var = np.ones(shape, np.float64)
        self.count = 0.0

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, np.float64).reshape(-1, *self.mean.shape)
        n = x.shape[0]
        if n == 0:
            return
        self.update_from_moments(n, x.mean(0), x.var(0))

    def update_from_moments(self, n: float, b_mean: np.ndarray, b_var: np.ndarray) -> None:
        """Merge a batch given by its size, mean and (population) variance; the learner of
        :mod:`trustpg.sampling.distributed` merges the workers' batch moments with this."""
        if n == 0:
            return
        total = self.count + n
        delta = b_mean - self.mean
        m2 = self.var * self.count + b_var * n + delta**2 * self.count * n / total
        self.mean = np.asarray(self.mean + delta * n / total, np.float64)
        self.var = np.asarray(m2 / total, np.float64)
        self.count = total

    def state_dict(self) -> dict[str, Tensor]:
        return {
            "mean": torch.from_numpy(self.mean.copy()),
            "var": torch.from_numpy(self.var.copy()),
            "count": torch.tensor([self.count], dtype=torch.float64),
        }

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.mean = state["mean"].numpy().astype(np.float64).reshape(self.mean.shape)
        self.var = state["var"].numpy().astype(np.float64).reshape(self.var.shape)
        self.count = float(state["count"][0])


@dataclass(frozen=True)
class Moments:
    """Count, mean and population variance of a batch of samples (along axis 0)."""

    count: float
    mean: np.ndarray
    var: np.ndarray

    @staticmethod
    def of(x: np.ndarray, shape: tuple[int, ...]) -> Moments:
        x = np.asarray(x, np.float64).reshape(-1, *shape)
        return Moments(float(x.shape[0]), x.mean(0), x.var(0))


def combine(a: Moments, b: Moments) -> Moments:
    """Moments of the union of two batches (Chan, Golub & LeVeque 1979):

    n = n_a + n_b,  μ = μ_a + δ n_b / n,  M2 = M2_a + M2_b + δ² n_a n_b / n,  δ = μ_b − μ_a,
    with M2 = n·var. Shapes of ``mean``/``var`` are the sample shape.
    """
    if a.count == 0:
        return b
    if b.count == 0:
        return a
    n = a.count + b.count
    delta = b.mean - a.mean
    m2 = a.var * a.count + b.var * b.count + delta**2 * a.count * b.count / n
    return Moments(n, a.mean + delta * b.count / n, m2 / n)


def combine_all(ms: list[Moments]) -> Moments:
    """Left fold of :func:`combine` in list (worker index) order; the list must not be empty."""
    out = ms[0]
    for m in ms[1:]:
        out = combine(out, m)
    return out
