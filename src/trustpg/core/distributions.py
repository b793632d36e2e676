"""Action distributions with analytic KL and the Fisher metric of their own parameters.

Every distribution has batch shape ``[B]`` (the leading dimension); per-dimension quantities
(``log_prob``, ``entropy``, ``kl``) are summed over the action dimensions so that each returns
one value per sample, shape ``[B]``.

The *metric* of a distribution is the Fisher information of its own parameters φ (logits,
probabilities, or mean and log-std), M(φ) = E_a[∇φ log p(a|φ) ∇φ log p(a|φ)ᵀ]. With J = ∂φ/∂θ
the policy's Jacobian, the policy Fisher matrix is F = E_s[Jᵀ M J] (Martens 2020, "New insights
and perspectives on the natural gradient method", §9). ``metric`` applies M to a tangent of
φ without forming it.

KL is always KL(old ‖ new), written ``kl(old, new)`` — the direction of the TRPO constraint
E_s[D_KL(π_θ(·|s) ‖ π_θ'(·|s))] ≤ δ (Schulman et al. 2015, eq. 12).
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor
from torch.nn import functional as nnf

from trustpg.core.blocks import Blocks, check_nvec

Params = tuple[Tensor, ...]

#: Probabilities are clamped this far from 0 and 1 before taking logs.
PROB_EPS = 1e-8


@runtime_checkable
class Distribution(Protocol):
    """What a policy's ``forward(obs)`` returns."""

    @property
    def params(self) -> Params:
        """The tensors φ the distribution is built from, each of shape ``[B, ...]``."""
        ...

    def with_params(self, params: Params) -> Distribution:
        """The same family and parameterisation, built from other φ."""
        ...

    def log_prob(self, actions: Tensor) -> Tensor: ...

    def entropy(self) -> Tensor: ...

    def mode(self) -> Tensor: ...

    def sample(self, generator: torch.Generator | None = None) -> Tensor: ...

    def metric(self, tangents: Params) -> Params:
        """M(φ) u for a tangent u of ``params`` (same shapes), evaluated per sample."""
        ...

    def kl_to(self, other: Distribution) -> Tensor:
        """KL(self ‖ other), analytic, shape ``[B]``; ``other`` is of the same family (TypeError
        otherwise). TRPO's constraint and the analytic Fisher are built on it."""
        ...


#: The methods (and the ``params`` property) a policy's distribution must provide.
PROTOCOL_MEMBERS = ("params", "with_params", "log_prob", "entropy", "mode", "sample", "metric", "kl_to")


def missing_members(dist: object) -> list[str]:
    """The :class:`Distribution` members ``dist`` lacks or has as a non-callable (``params``
    excepted, a property); empty if it provides them all."""
    return [
        name for name in PROTOCOL_MEMBERS
        if not hasattr(dist, name) or (name != "params" and not callable(getattr(dist, name)))
    ]  # fmt: skip


def _family_error(old: object, new: object) -> TypeError:
    return TypeError(
        f"kl(old, new) needs two distributions of one family, got "
        f"{type(old).__name__} and {type(new).__name__}"
    )


def _check_one(a: Tensor | None, b: Tensor | None, names: str) -> Tensor:
    if (a is None) == (b is None):
        raise ValueError(f"give exactly one of {names}")
    return a if a is not None else b  # type: ignore[return-value]


class Bernoulli:
    """Independent Bernoulli actions in {0, 1}, shape ``[B, A]``.

    Built from ``probs`` θ = p(a=1) (the seed's parameterisation) or from ``logits``
    z = log θ/(1−θ). The metric is 1/(θ(1−θ)) = 1/θ + 1/(1−θ) for probs (the seed's
    F(θ)) and θ(1−θ) for logits.
    """

    def __init__(self, probs: Tensor | None = None, logits: Tensor | None = None) -> None:
        self._param = _check_one(probs, logits, "probs or logits")
        self._is_probs = probs is not None
        if self._is_probs:
            self.probs = probs.clamp(PROB_EPS, 1 - PROB_EPS)  # type: ignore[union-attr]
            self.logits = torch.log(self.probs) - torch.log1p(-self.probs)
        else:
            self.logits = self._param
            self.probs = torch.sigmoid(self.logits)

    @property
    def params(self) -> Params:
        return (self._param,)

    def with_params(self, params: Params) -> Bernoulli:
        (p,) = params
        return Bernoulli(probs=p) if self._is_probs else Bernoulli(logits=p)

    def _log_p1_p0(self) -> tuple[Tensor, Tensor]:
        return -nnf.softplus(-self.logits), -nnf.softplus(self.logits)

    def log_prob(self, actions: Tensor) -> Tensor:
        log_p1, log_p0 = self._log_p1_p0()
        a = actions.to(log_p1.dtype)
        return (a * log_p1 + (1 - a) * log_p0).sum(-1)

    def entropy(self) -> Tensor:
        log_p1, log_p0 = self._log_p1_p0()
        p = self.probs
        return -(p * log_p1 + (1 - p) * log_p0).sum(-1)

    def mode(self) -> Tensor:
        return (self.probs > 0.5).to(self.probs.dtype)

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        u = torch.rand(self.probs.shape, generator=generator, dtype=self.probs.dtype)
        return (u < self.probs).to(self.probs.dtype)

    def metric(self, tangents: Params) -> Params:
        (u,) = tangents
        var = self.probs * (1 - self.probs)
        return (u / var,) if self._is_probs else (u * var,)

    def kl_to(self, other: Distribution) -> Tensor:
        if not isinstance(other, Bernoulli):
            raise _family_error(self, other)
        o1, o0 = self._log_p1_p0()
        n1, n0 = other._log_p1_p0()
        p = self.probs
        return (p * (o1 - n1) + (1 - p) * (o0 - n0)).sum(-1)


class Categorical:
    """One of K actions, logits or probs of shape ``[B, K]``; actions are integer indices ``[B]``.

    Metric: diag(p) − ppᵀ for logits; diag(1/p) for probs (on tangents that sum to zero,
    which is the only direction probs can move in).
    """

    def __init__(self, logits: Tensor | None = None, probs: Tensor | None = None) -> None:
        self._param = _check_one(logits, probs, "logits or probs")
        self._is_probs = probs is not None
        if self._is_probs:
            self.log_probs = torch.log(self._param.clamp_min(PROB_EPS))
        else:
            self.log_probs = torch.log_softmax(self._param, dim=-1)
        self.probs = self.log_probs.exp()

    @property
    def params(self) -> Params:
        return (self._param,)

    def with_params(self, params: Params) -> Categorical:
        (p,) = params
        return Categorical(probs=p) if self._is_probs else Categorical(logits=p)

    def log_prob(self, actions: Tensor) -> Tensor:
        return self.log_probs.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)

    def entropy(self) -> Tensor:
        return -(self.probs * self.log_probs).sum(-1)

    def mode(self) -> Tensor:
        return self.probs.argmax(-1)

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        return torch.multinomial(self.probs, 1, generator=generator).squeeze(-1)

    def metric(self, tangents: Params) -> Params:
        (u,) = tangents
        if self._is_probs:
            return (u / self.probs,)
        pu = self.probs * u
        return (pu - self.probs * pu.sum(-1, keepdim=True),)

    def kl_to(self, other: Distribution) -> Tensor:
        if not isinstance(other, Categorical):
            raise _family_error(self, other)
        return (self.probs * (self.log_probs - other.log_probs)).sum(-1)


class MultiCategorical:
    """Independent categoricals over D action dimensions with n_1..n_D choices each
    (gymnasium's ``MultiDiscrete``): logits ``[B, Σ n_d]`` (the D blocks concatenated),
    actions integer ``[B, D]``.

    log p(a) = Σ_d log p_d(a_d); entropy and KL are the sums over d as well. The metric is
    block diagonal with the Categorical logits metric diag(p_d) − p_d p_dᵀ in each block.
    """

    def __init__(self, logits: Tensor, nvec: tuple[int, ...] | list[int]) -> None:
        self.nvec = check_nvec(logits, nvec)
        self.logits = logits
        self.blocks = Blocks([Categorical(logits=z) for z in logits.split(self.nvec, dim=-1)], self.nvec)
        self.parts = self.blocks.parts

    @property
    def params(self) -> Params:
        return (self.logits,)

    def with_params(self, params: Params) -> MultiCategorical:
        (z,) = params
        return MultiCategorical(z, self.nvec)

    def log_prob(self, actions: Tensor) -> Tensor:
        return self.blocks.log_prob(actions)

    def entropy(self) -> Tensor:
        return self.blocks.entropy()

    def mode(self) -> Tensor:
        return self.blocks.mode()

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        return self.blocks.sample(generator)

    def metric(self, tangents: Params) -> Params:
        return self.blocks.metric(tangents)

    def kl_to(self, other: Distribution) -> Tensor:
        if not isinstance(other, MultiCategorical):
            raise _family_error(self, other)
        return self.blocks.kl_to(other.blocks)


class DiagGaussian:
    """Gaussian with diagonal covariance; ``mean`` ``[B, A]``, ``log_std`` broadcastable to it.

    Metric in (mean, log σ): diag(1/σ²) for the mean and 2 for each log σ (the two blocks
    are orthogonal).
    """

    def __init__(self, mean: Tensor, log_std: Tensor) -> None:
        self.mean = mean
        self.log_std = log_std.expand_as(mean)
        self.std = self.log_std.exp()

    @property
    def params(self) -> Params:
        return (self.mean, self.log_std)

    def with_params(self, params: Params) -> DiagGaussian:
        mean, log_std = params
        return DiagGaussian(mean, log_std)

    def log_prob(self, actions: Tensor) -> Tensor:
        z = (actions - self.mean) / self.std
        return (-0.5 * z.pow(2) - self.log_std - 0.5 * math.log(2 * math.pi)).sum(-1)

    def entropy(self) -> Tensor:
        return (self.log_std + 0.5 * (1.0 + math.log(2 * math.pi))).sum(-1)

    def mode(self) -> Tensor:
        return self.mean

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        noise = torch.randn(self.mean.shape, generator=generator, dtype=self.mean.dtype)
        return self.mean + self.std * noise

    def metric(self, tangents: Params) -> Params:
        u_mean, u_log_std = tangents
        return (u_mean / self.std.pow(2), 2.0 * u_log_std)

    def kl_to(self, other: Distribution) -> Tensor:
        if not isinstance(other, DiagGaussian):
            raise _family_error(self, other)
        var_ratio = (self.std / other.std).pow(2)
        z = (self.mean - other.mean) / other.std
        return 0.5 * (var_ratio + z.pow(2) - 1.0 - torch.log(var_ratio)).sum(-1)


def kl(old: Distribution, new: Distribution) -> Tensor:
    """KL(old ‖ new) = E_{a~old}[log old(a) − log new(a)], analytic, shape ``[B]``: ``old.kl_to(new)``.

    Both must be of the same family (TypeError otherwise). Summed over action dimensions like
    ``log_prob``.
    """
    kl_to = getattr(old, "kl_to", None)
    if kl_to is None:
        raise TypeError(
            f"kl(old, new): {type(old).__name__} has no kl_to method (the Distribution protocol's "
            "KL(self ‖ other)); add one to use it with TRPO/NPG"
        )
    return kl_to(new)


def detach(dist: Distribution) -> Distribution:
    """A copy whose parameters carry no gradient: the fixed π_old of KL(π_old ‖ π_θ).

    The tensors are cloned: a policy output can be a view of a parameter (a state-independent
    log σ expanded over the batch), and the in-place parameter updates of a step must not move
    π_old with it.
    """
    return dist.with_params(tuple(p.detach().clone() for p in dist.params))
