"""The Beta policy for bounded continuous actions (Chou, Maturana and Scherer 2017, "Improving
stochastic policy gradients in continuous control with deep reinforcement learning using the
Beta distribution", ICML).

Each action dimension i is an independent Beta(α_i, β_i) on [0, 1], stretched affinely onto the
action box [low_i, high_i]: a = low + (high − low)·x with x ~ Beta(α, β). Unlike a Gaussian
clipped to the box, no probability mass sits outside the bounds, so the density the gradient
uses is the density of the action the environment receives.

The network outputs unconstrained φ = (z_α, z_β); α = 1 + softplus(z_α), β = 1 + softplus(z_β)
(as Chou et al.: α, β > 1 keeps the density unimodal and bounded). Samples, modes and
``log_prob`` are in the action box; ``log_prob`` includes the affine map's log-Jacobian
−Σ log(high − low), a constant that cancels in likelihood ratios and in KL.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as nnf

from trustpg.core.distributions import Distribution, Params, _family_error


def beta_concentration(z: Tensor) -> Tensor:
    """α = 1 + softplus(z) > 1: the map from the network's output z to a Beta concentration."""
    return 1.0 + nnf.softplus(z)


def log_beta_fn(a: Tensor, b: Tensor) -> Tensor:
    """log B(a, b) = log Γ(a) + log Γ(b) − log Γ(a + b)."""
    return torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b)


def beta_entropy(a: Tensor, b: Tensor) -> Tensor:
    """Differential entropy of Beta(a, b) on [0, 1], elementwise:
    H = log B(a, b) − (a−1)ψ(a) − (b−1)ψ(b) + (a+b−2)ψ(a+b) (ψ the digamma function)."""
    return (
        log_beta_fn(a, b) - (a - 1) * torch.digamma(a) - (b - 1) * torch.digamma(b)
        + (a + b - 2) * torch.digamma(a + b)
    )  # fmt: skip


def beta_kl(a1: Tensor, b1: Tensor, a2: Tensor, b2: Tensor) -> Tensor:
    """KL(Beta(a1, b1) ‖ Beta(a2, b2)), elementwise:
    log B(a2, b2) − log B(a1, b1) + (a1−a2)ψ(a1) + (b1−b2)ψ(b1) + (a2−a1+b2−b1)ψ(a1+b1)
    (e.g. Penny 2001, "KL-divergences of Normal, Gamma, Dirichlet and Wishart densities").
    An affine map of both onto [low, high] leaves it unchanged."""
    s1 = a1 + b1
    return (
        log_beta_fn(a2, b2) - log_beta_fn(a1, b1) + (a1 - a2) * torch.digamma(a1)
        + (b1 - b2) * torch.digamma(b1) + (a2 - a1 + b2 - b1) * torch.digamma(s1)
    )  # fmt: skip


def beta_fisher_apply(a: Tensor, b: Tensor, ua: Tensor, ub: Tensor) -> tuple[Tensor, Tensor]:
    """I(α, β) u for the Fisher information of Beta(α, β) in (α, β), elementwise:
    I = [[ψ'(α) − ψ'(α+β), −ψ'(α+β)], [−ψ'(α+β), ψ'(β) − ψ'(α+β)]], ψ' the trigamma function
    (the Hessian of the log-partition log B(α, β) of the exponential family with sufficient
    statistics (log x, log(1−x)))."""
    tab = torch.polygamma(1, a + b)
    return (torch.polygamma(1, a) * ua - tab * (ua + ub), torch.polygamma(1, b) * ub - tab * (ua + ub))


def gamma_sample(shape_k: Tensor, generator: torch.Generator | None) -> Tensor:
    """Gamma(k, 1) draws for every k ≥ 1 of ``shape_k`` by Marsaglia and Tsang (2000, "A simple
    method for generating gamma variables", ACM TOMS 26(3)): with d = k − 1/3, c = 1/√(9d),
    x ~ N(0, 1), v = (1 + cx)³ and u ~ U(0, 1), accept d·v when v > 0 and
    log u < x²/2 + d − dv + d log v. Every round draws a normal and a uniform for every entry (in
    that order) from ``generator``, so the draws, and the number of rounds, are fixed by its state:
    seeded and resumable (torch's own Gamma sampler takes no generator). Acceptance is ≥ 95 % per
    round for k ≥ 1."""
    k = shape_k.detach()
    d = k - 1.0 / 3.0
    c = torch.rsqrt(9.0 * d)
    out = torch.zeros_like(k)
    todo = torch.ones_like(k, dtype=torch.bool)
    while bool(todo.any()):
        x = torch.randn(k.shape, generator=generator, dtype=k.dtype)
        u = torch.rand(k.shape, generator=generator, dtype=k.dtype)
        v = (1.0 + c * x) ** 3
        ok = (v > 0) & (torch.log(u) < 0.5 * x * x + d - d * v + d * torch.log(v.clamp_min(1e-30)))
        take = todo & ok
        out = torch.where(take, d * v, out)
        todo = todo & ~ok
    return out


class Beta:
    """Independent Beta actions on the box [low, high], shape ``[B, A]``.

    Parameters φ = (z_α, z_β), each ``[B, A]``, with α = 1 + softplus(z_α), β = 1 + softplus(z_β);
    ``low``/``high`` broadcast to ``[B, A]`` and are finite with low < high. Metric in φ: with
    D = diag(σ(z_α), σ(z_β)) = ∂(α, β)/∂φ per dimension (σ the logistic function),
    M(φ) = D I(α, β) D, I the Beta Fisher information in (α, β) (:func:`beta_fisher_apply`).
    """

    def __init__(
        self, z_alpha: Tensor, z_beta: Tensor, low: Tensor | float = 0.0, high: Tensor | float = 1.0
    ) -> None:
        self.z_alpha, self.z_beta = z_alpha, z_beta
        self._bounds = (low, high)
        self.alpha, self.beta = beta_concentration(z_alpha), beta_concentration(z_beta)
        dt = z_alpha.dtype
        self.low = torch.as_tensor(low, dtype=dt).expand_as(z_alpha)
        self.high = torch.as_tensor(high, dtype=dt).expand_as(z_alpha)
        self.scale = self.high - self.low
        # x this close to 0 or 1 is moved inside: a float32 draw X/(X+Y) can round to exactly 1.
        self._eps = torch.finfo(dt).eps

    @property
    def params(self) -> Params:
        return (self.z_alpha, self.z_beta)

    def with_params(self, params: Params) -> Beta:
        z_alpha, z_beta = params
        return Beta(z_alpha, z_beta, *self._bounds)

    def _unit(self, actions: Tensor) -> Tensor:
        """x = (a − low)/(high − low) in (0, 1), kept ``eps`` inside the bounds."""
        x = (actions.to(self.alpha.dtype) - self.low) / self.scale
        return x.clamp(self._eps, 1.0 - self._eps)

    def log_prob(self, actions: Tensor) -> Tensor:
        """Σ_i [(α_i−1) log x_i + (β_i−1) log(1−x_i) − log B(α_i, β_i) − log(high_i − low_i)]."""
        x = self._unit(actions)
        a, b = self.alpha, self.beta
        lp = (a - 1) * torch.log(x) + (b - 1) * torch.log1p(-x) - log_beta_fn(a, b) - torch.log(self.scale)
        return lp.sum(-1)

    def entropy(self) -> Tensor:
        """Σ_i H(Beta(α_i, β_i)) + log(high_i − low_i) (entropy of the stretched density)."""
        return (beta_entropy(self.alpha, self.beta) + torch.log(self.scale)).sum(-1)

    def mode(self) -> Tensor:
        """low + (high − low)(α−1)/(α+β−2), the density's maximum (α, β > 1); the centre of the
        box where α + β − 2 underflows (both α, β ≈ 1: a flat density)."""
        den = self.alpha + self.beta - 2.0
        flat = den <= self._eps
        x = torch.where(flat, torch.full_like(den, 0.5), (self.alpha - 1.0) / torch.where(flat, 1.0, den))
        return self.low + self.scale * x

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        """a = low + (high − low)·X/(X + Y), X ~ Gamma(α), Y ~ Gamma(β) (:func:`gamma_sample`, one
        call for [α, β] concatenated on the last dimension, so the NumPy sampler can mirror it)."""
        g = gamma_sample(torch.cat([self.alpha, self.beta], -1), generator)
        g_a, g_b = g.split(self.alpha.shape[-1], -1)
        x = (g_a / (g_a + g_b)).clamp(self._eps, 1.0 - self._eps)
        return self.low + self.scale * x

    def metric(self, tangents: Params) -> Params:
        u_a, u_b = tangents
        da, db = torch.sigmoid(self.z_alpha), torch.sigmoid(self.z_beta)
        ma, mb = beta_fisher_apply(self.alpha, self.beta, da * u_a, db * u_b)
        return (da * ma, db * mb)

    def kl_to(self, other: Distribution) -> Tensor:
        if not isinstance(other, Beta):
            raise _family_error(self, other)
        return beta_kl(self.alpha, self.beta, other.alpha, other.beta).sum(-1)
