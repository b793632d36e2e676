"""MLP actor (observation → action distribution) and critic (observation → V(s)).

A custom policy is any ``nn.Module`` whose ``forward(obs)`` returns a
:class:`trustpg.core.distributions.Distribution` (docs/usage.md, "Custom policies"); these are the
defaults, built from the environment's spaces by :func:`make_actor`.
"""

from __future__ import annotations

import math
from typing import Literal

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from trustpg.core.distributions import Bernoulli, Categorical, DiagGaussian, Distribution, MultiCategorical

ActionKind = Literal["categorical", "multicategorical", "bernoulli", "gaussian"]
ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}
#: Orthogonal-init gains (Saxe et al. 2014): √2 for hidden layers; a small policy head keeps the
#: initial policy near uniform/zero-mean (Andrychowicz et al. 2021, "What matters in on-policy RL").
HIDDEN_GAIN = math.sqrt(2.0)
POLICY_HEAD_GAIN = 0.01
VALUE_HEAD_GAIN = 1.0


def mlp(sizes: list[int], activation: str, head_gain: float) -> nn.Sequential:
    """Linear layers of the given sizes with ``activation`` between them, orthogonally initialised."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layer = nn.Linear(sizes[i], sizes[i + 1])
        last = i == len(sizes) - 2
        nn.init.orthogonal_(layer.weight, gain=head_gain if last else HIDDEN_GAIN)
        nn.init.zeros_(layer.bias)
        layers.append(layer)
        if not last:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class Actor(nn.Module):
    """π_θ(a|s): an MLP producing logits (categorical, multicategorical, bernoulli) or a mean (gaussian).

    The Gaussian log-std is a state-independent parameter, as in Schulman et al. 2015.
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        kind: ActionKind,
        hidden: tuple[int, ...] = (64, 64),
        activation: str = "tanh",
        log_std_init: float = 0.0,
        nvec: tuple[int, ...] = (),
    ) -> None:
        super().__init__()
        self.kind = kind
        self.nvec = tuple(nvec)  # choices per dimension, for "multicategorical"
        self.net = mlp([obs_dim, *hidden, action_dim], activation, POLICY_HEAD_GAIN)
        if kind == "gaussian":
            self.log_std = nn.Parameter(torch.full((action_dim,), float(log_std_init)))

    def forward(self, obs: Tensor) -> Distribution:
        out = self.net(obs)
        if self.kind == "categorical":
            return Categorical(logits=out)
        if self.kind == "multicategorical":
            return MultiCategorical(out, self.nvec)
        if self.kind == "bernoulli":
            return Bernoulli(logits=out)
        return DiagGaussian(out, self.log_std)


class Critic(nn.Module):
    """V_φ(s), shape ``[B]``."""

    def __init__(self, obs_dim: int, hidden: tuple[int, ...] = (64, 64), activation: str = "tanh") -> None:
        super().__init__()
        self.net = mlp([obs_dim, *hidden, 1], activation, VALUE_HEAD_GAIN)

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(obs).squeeze(-1)


SUPPORTED_ACTIONS = "Discrete, MultiDiscrete, MultiBinary and Box"


def action_kind(space: gym.Space) -> tuple[ActionKind, int]:
    """The distribution family and action dimension for an action space."""
    if isinstance(space, gym.spaces.Discrete):
        return "categorical", int(space.n)
    if isinstance(space, gym.spaces.MultiDiscrete):
        if space.nvec.ndim != 1 or np.any(space.start != 0):
            raise ValueError(f"MultiDiscrete actions must be 1-D and start at 0, got {space}")
        return "multicategorical", int(space.nvec.sum())
    if isinstance(space, gym.spaces.MultiBinary):
        return "bernoulli", int(np.prod(space.shape))
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
        if not np.issubdtype(space.dtype, np.floating):
            raise ValueError(f"Box action space must be float, got dtype {space.dtype}")
        return "gaussian", int(space.shape[0])
    raise ValueError(f"unsupported action space {space}; trustpg supports {SUPPORTED_ACTIONS} (1-D) actions")


def obs_dim(space: gym.Space) -> int:
    """Size of a flat observation; Box of any shape is flattened."""
    if isinstance(space, gym.spaces.Box):
        return int(np.prod(space.shape))
    if isinstance(space, gym.spaces.Discrete):
        raise ValueError(
            f"unsupported observation space {space}; trustpg needs Box observations "
            "(wrap discrete observations with gymnasium.wrappers.OneHot or similar)"
        )
    raise ValueError(f"unsupported observation space {space}; trustpg needs Box observations")


def make_actor(
    observation_space: gym.Space,
    action_space: gym.Space,
    hidden: tuple[int, ...],
    activation: str,
    log_std_init: float,
) -> Actor:
    kind, dim = action_kind(action_space)
    nvec = tuple(int(n) for n in action_space.nvec) if kind == "multicategorical" else ()
    return Actor(obs_dim(observation_space), dim, kind, hidden, activation, log_std_init, nvec)
