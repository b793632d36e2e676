"""Tiny float64 policies and batches for the unit tests of the math core."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import functional_call

from trustpg.core.distributions import Bernoulli, Categorical, DiagGaussian, Distribution
from trustpg.core.fisher import fisher_vector_product
from trustpg.core.linalg import conjugate_gradient, flat_params
from trustpg.core.update import PolicyBatch

OBS_DIM = 3
HIDDEN = 4
N_ACTIONS = 3  # Categorical
ACT_DIM = 2  # Bernoulli and DiagGaussian

KINDS = ("categorical", "bernoulli", "gaussian")


def _mlp(out: int, hidden: int) -> nn.Module:
    """obs → tanh hidden layer → out, or a linear map if ``hidden`` is 0."""
    if hidden == 0:
        return nn.Linear(OBS_DIM, out)
    return nn.Sequential(nn.Linear(OBS_DIM, hidden), nn.Tanh(), nn.Linear(hidden, out))


class CategoricalPolicy(nn.Module):
    def __init__(self, hidden: int = HIDDEN) -> None:
        super().__init__()
        self.net = _mlp(N_ACTIONS, hidden)

    def forward(self, obs: Tensor) -> Categorical:
        return Categorical(logits=self.net(obs))


class BernoulliPolicy(nn.Module):
    def __init__(self, hidden: int = HIDDEN) -> None:
        super().__init__()
        self.net = _mlp(ACT_DIM, hidden)

    def forward(self, obs: Tensor) -> Bernoulli:
        return Bernoulli(logits=self.net(obs))


class GaussianPolicy(nn.Module):
    """Mean from an MLP, state-independent log-std parameter."""

    def __init__(self, hidden: int = HIDDEN) -> None:
        super().__init__()
        self.net = _mlp(ACT_DIM, hidden)
        self.log_std = nn.Parameter(0.3 * torch.randn(ACT_DIM) - 0.2)

    def forward(self, obs: Tensor) -> DiagGaussian:
        return DiagGaussian(self.net(obs), self.log_std)


class ThetaBernoulli(nn.Module):
    """One parameter θ = p(a=1), the same for every state: Bernoulli(probs=θ)."""

    def __init__(self, theta: float) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.tensor([theta], dtype=torch.float64))

    def forward(self, obs: Tensor) -> Bernoulli:
        return Bernoulli(probs=self.theta.expand(obs.shape[0], 1))


_CLASSES = {
    "categorical": CategoricalPolicy,
    "bernoulli": BernoulliPolicy,
    "gaussian": GaussianPolicy,
}


def make_policy(kind: str, seed: int = 0, hidden: int = HIDDEN) -> nn.Module:
    """A float64 policy; ``hidden=0`` makes it linear in the observation (a well-conditioned
    Fisher, for tests of the quadratic KL model)."""
    torch.manual_seed(seed)
    return _CLASSES[kind](hidden).double()


def make_obs(n: int, seed: int = 1) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, OBS_DIM, generator=g, dtype=torch.float64)


def make_batch(policy: nn.Module, n: int = 32, seed: int = 1) -> PolicyBatch:
    """States ~ N(0, I), actions sampled from the policy, advantages ~ N(0, 1)."""
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(n, OBS_DIM, generator=g, dtype=torch.float64)
    with torch.no_grad():
        actions = policy(obs).sample(generator=g)
    advantages = torch.randn(n, generator=g, dtype=torch.float64)
    return PolicyBatch(obs, actions, advantages)


def unflatten(policy: nn.Module, flat: Tensor) -> dict[str, Tensor]:
    """A ``{name: tensor}`` dict for ``functional_call`` from a flat parameter vector."""
    out, i = {}, 0
    for name, p in policy.named_parameters():
        n = p.numel()
        out[name] = flat[i : i + n].view_as(p)
        i += n
    assert i == flat.numel()
    return out


def dist_at(policy: nn.Module, flat: Tensor, obs: Tensor) -> Distribution:
    """The policy's distribution at parameters ``flat`` (differentiable in ``flat``)."""
    return functional_call(policy, unflatten(policy, flat), (obs,))


def theta0(policy: nn.Module) -> Tensor:
    return flat_params(policy)


def surrogate_and_natural_gradient(policy: nn.Module, obs: Tensor, seed: int) -> tuple[Tensor, Tensor]:
    """(g, x): the surrogate's gradient at θ for actions sampled from the policy and N(0, 1)
    advantages, and x ≈ (F + 10⁻³ I)⁻¹ g by conjugate gradient run to convergence."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        actions = policy(obs).sample(gen)
        logp_old = policy(obs).log_prob(actions)
    adv = torch.randn(obs.shape[0], generator=gen, dtype=torch.float64)

    def surrogate(t: Tensor) -> Tensor:
        return (torch.exp(dist_at(policy, t, obs).log_prob(actions) - logp_old) * adv).mean()

    g = torch.func.grad(surrogate)(flat_params(policy))
    fvp = fisher_vector_product(policy, obs, damping=1e-3)
    return g, conjugate_gradient(fvp, g, iters=100, tol=1e-20).x
