"""Recurrent actor and critic (``policy="gru"`` or ``"lstm"``) for partially observed envs.

A recurrent network is evaluated two ways, and both give the same numbers:

* one step at a time while collecting: ``step(obs [n, F], state [n, S]) -> (out, state')``, the
  collector carrying ``state`` from step to step and zeroing it where an episode ended;
* on whole sequences in the update (backprop through time): ``forward(x)`` with ``x`` the packed
  sequences of :func:`pack` — per env, the state at the start of the rollout and T steps of
  (episode-start flag, observation) — one row per env. The actor returns a distribution over the
  N·T states in row order (env-major: row n, step t is state ``n·T + t``), so the update rules, the
  KL, the Fisher-vector products and the line search of :mod:`trustpg.core` see an ordinary batch
  of states and need nothing of the recurrence: double backward runs through it by autograd.

Packing keeps the core's contract (``policy(obs)`` → a distribution whose leading dimension is the
states; ``obs[::k]`` subsamples it, here by whole sequences). The state at a rollout's start is
what collection carried in (Hochreiter & Schmidhuber 1997; Cho et al. 2014 for the cells; the
stored-state scheme as in Kapturowski et al. 2019, without burn-in).
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, runtime_checkable

import gymnasium as gym
import torch
from torch import Tensor, nn

from trustpg.core.distributions import Distribution
from trustpg.nets.policies import (
    POLICY_HEAD_GAIN,
    VALUE_HEAD_GAIN,
    ActionKind,
    BoxDist,
    finite_bounds,
    head_distribution,
    head_of,
    mlp,
    obs_dim,
)  # fmt: skip

Cell = Literal["gru", "lstm"]


@runtime_checkable
class Recurrent(Protocol):
    """What the collector and the trainer need of a recurrent network (the capability they check)."""

    state_size: int
    obs_dim: int

    def initial_state(self, n: int) -> Tensor:
        """Zeros ``[n, state_size]``: the state at an episode's start."""
        ...

    def step(self, obs: Tensor, state: Tensor) -> tuple[Any, Tensor]:
        """One step: the output for ``obs`` ``[n, F]`` (a distribution, or values ``[n]``) and the
        next state."""
        ...


def is_recurrent(module: object) -> bool:
    return isinstance(module, Recurrent)


def pack(obs: Tensor, starts: Tensor, state: Tensor) -> Tensor:
    """Sequences as one row per env: ``[N, S + T·(F + 1)]`` from observations ``[T, N, F]``,
    episode-start flags ``[T, N]`` (1 where the state is zeroed before the step) and the states at
    the first step ``[N, S]``."""
    steps = torch.cat([starts.unsqueeze(-1).to(obs.dtype), obs], -1)  # [T, N, F + 1]
    n = obs.shape[1]
    return torch.cat([state.to(obs.dtype), steps.transpose(0, 1).reshape(n, -1)], 1)


def unpack(x: Tensor, state_size: int, obs_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """(states ``[N, S]``, starts ``[N, T]``, observations ``[N, T, F]``) of :func:`pack`'s rows."""
    n, width = x.shape[0], x.shape[1] - state_size
    if width <= 0 or width % (obs_size + 1):
        raise ValueError(
            f"packed sequences of width {x.shape[1]} do not fit a state of {state_size} and steps of "
            f"{obs_size} + 1 entries (see trustpg.nets.recurrent.pack)"
        )
    steps = x[:, state_size:].reshape(n, width // (obs_size + 1), obs_size + 1)
    return x[:, :state_size], steps[..., 0], steps[..., 1:]


class _Trunk(nn.Module):
    """A GRU or LSTM cell over the raw observation; the state is ``h`` (GRU) or ``[h, c]`` (LSTM)."""

    def __init__(self, obs_size: int, hidden: int, cell: Cell) -> None:
        super().__init__()
        if cell not in ("gru", "lstm"):
            raise ValueError(f"a recurrent cell must be 'gru' or 'lstm', got {cell!r}")
        self.cell_kind, self.hidden = cell, hidden
        self.cell: nn.GRUCell | nn.LSTMCell = (
            nn.GRUCell(obs_size, hidden) if cell == "gru" else nn.LSTMCell(obs_size, hidden)
        )
        self.state_size = hidden if cell == "gru" else 2 * hidden

    def forward(self, obs: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """(features h ``[n, H]``, next state ``[n, S]``)."""
        if isinstance(self.cell, nn.GRUCell):
            h = self.cell(obs, state)
            return h, h
        h, c = self.cell(obs, (state[:, : self.hidden], state[:, self.hidden :]))
        return h, torch.cat([h, c], 1)

    def unroll(self, x: Tensor, obs_size: int) -> tuple[Tensor, Tensor]:
        """Features of every step of packed sequences ``[N·T, H]`` (env-major) and the observations
        ``[N·T, F]``; the state is zeroed before a step whose start flag is set."""
        state, starts, obs = unpack(x, self.state_size, obs_size)
        keep = 1.0 - starts.unsqueeze(-1)
        feats = []
        for t in range(obs.shape[1]):
            h, state = self(obs[:, t], state * keep[:, t])
            feats.append(h)
        n, steps = obs.shape[0], obs.shape[1]
        return torch.stack(feats, 1).reshape(n * steps, -1), obs.reshape(n * steps, -1)


class RecurrentActor(nn.Module):
    """π_θ(a | o_1..o_t): a GRU/LSTM cell, then an MLP head producing what :class:`~trustpg.nets.
    policies.Actor`'s MLP produces (logits, a Gaussian mean, Beta concentrations), so every action
    family and action masks work as there."""

    def __init__(
        self, obs_size: int, action_dim: int, kind: ActionKind, cell: Cell = "gru", state_hidden: int = 64,
        hidden: tuple[int, ...] = (64,), activation: str = "tanh", log_std_init: float = 0.0,
        nvec: tuple[int, ...] = (), low: Any = None, high: Any = None, mask_dim: int = 0,
    ) -> None:  # fmt: skip
        super().__init__()
        if mask_dim and (kind not in ("categorical", "multicategorical") or mask_dim != action_dim):
            raise ValueError(
                f"an action mask of {mask_dim} entries does not fit {kind} actions of size {action_dim}"
            )
        self.kind, self.nvec, self.action_dim, self.mask_dim = kind, tuple(nvec), action_dim, int(mask_dim)
        self.obs_dim = obs_size
        self.trunk = _Trunk(obs_size, state_hidden, cell)
        self.state_size = self.trunk.state_size
        out = 2 * action_dim if kind == "beta" else action_dim
        self.head = mlp([state_hidden, *hidden, out], activation, POLICY_HEAD_GAIN)
        if kind == "gaussian":
            self.log_std = nn.Parameter(torch.full((action_dim,), float(log_std_init)))
        self.low: Tensor
        self.high: Tensor
        if kind == "beta":
            lo, hi = finite_bounds(low, high, action_dim)
            self.register_buffer("low", torch.as_tensor(lo, dtype=torch.float32), persistent=False)
            self.register_buffer("high", torch.as_tensor(hi, dtype=torch.float32), persistent=False)

    def initial_state(self, n: int) -> Tensor:
        return torch.zeros(n, self.state_size)

    def step(self, obs: Tensor, state: Tensor) -> tuple[Distribution, Tensor]:
        h, state = self.trunk(obs, state)
        return head_distribution(self, self.head(h), obs), state

    def forward(self, x: Tensor) -> Distribution:
        """The distribution over the N·T states of packed sequences (:func:`pack`), env-major."""
        feats, obs = self.trunk.unroll(x, self.obs_dim)
        return head_distribution(self, self.head(feats), obs)


class RecurrentCritic(nn.Module):
    """V_φ(o_1..o_t): a GRU/LSTM cell and an MLP value head. ``forward`` of packed sequences gives
    ``[N, T]`` (the shape of the λ-returns it is fitted to, env-major)."""

    def __init__(
        self, obs_size: int, cell: Cell = "gru", state_hidden: int = 64, hidden: tuple[int, ...] = (64,),
        activation: str = "tanh",
    ) -> None:  # fmt: skip
        super().__init__()
        self.obs_dim = obs_size
        self.trunk = _Trunk(obs_size, state_hidden, cell)
        self.state_size = self.trunk.state_size
        self.head = mlp([state_hidden, *hidden, 1], activation, VALUE_HEAD_GAIN)

    def initial_state(self, n: int) -> Tensor:
        return torch.zeros(n, self.state_size)

    def step(self, obs: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        h, state = self.trunk(obs, state)
        return self.head(h).squeeze(-1), state

    def forward(self, x: Tensor) -> Tensor:
        feats, _ = self.trunk.unroll(x, self.obs_dim)
        return self.head(feats).reshape(x.shape[0], -1)


def make_recurrent(
    observation_space: gym.Space, action_space: gym.Space, cell: Cell, state_hidden: int,
    hidden: tuple[int, ...], critic_hidden: tuple[int, ...], activation: str, log_std_init: float,
    action_dist: BoxDist = "gaussian",
) -> tuple[RecurrentActor, RecurrentCritic]:  # fmt: skip
    """The recurrent actor and critic for these spaces (as :func:`~trustpg.nets.policies.make_actor`)."""
    h = head_of(observation_space, action_space, action_dist)
    size = obs_dim(observation_space)
    actor = RecurrentActor(
        size, h.dim, h.kind, cell, state_hidden, hidden, activation, log_std_init, h.nvec, h.low, h.high,
        h.mask_dim,
    )  # fmt: skip
    return actor, RecurrentCritic(size, cell, state_hidden, critic_hidden, activation)
