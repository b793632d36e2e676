"""The recurrent states a collection carries from step to step, and the sequences it hands on.

With a recurrent actor (or critic, :mod:`trustpg.nets.recurrent`) the :class:`~trustpg.sampling.
rollout.Collector` keeps one state per env here: the actor's advances with every step and is zeroed
where an episode ended, so the next step starts its episode from the initial state. A batch then
carries, besides its ``[T, N]`` arrays, the packed sequences (state at the batch's first step,
episode-start flags, observations) the update evaluates the recurrent actor on (backprop through
time), and the critic's, which also gives the values V(s_t), V(s_{t+1}) and V(final obs) by
unrolling the critic over the batch. The states are part of the collector's checkpointed state,
so a resumed run continues bit for bit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from trustpg.core.distributions import Distribution
from trustpg.envs.envstate import decode, encode
from trustpg.nets.recurrent import Recurrent, is_recurrent, pack


class SequenceMemory:
    """Recurrent states of ``n`` envs for an actor and/or a critic that are :func:`is_recurrent`."""

    def __init__(self, actor: nn.Module, critic: nn.Module, n: int) -> None:
        self.n = n
        self.actor_state = actor.initial_state(n) if isinstance(actor, Recurrent) else None
        self.critic_state = critic.initial_state(n) if isinstance(critic, Recurrent) else None
        self._first: tuple[Tensor | None, Tensor | None] = (None, None)
        self._starts: list[Tensor] = []
        self._next: Tensor | None = None

    @staticmethod
    def of(actor: nn.Module, critic: nn.Module, n: int) -> SequenceMemory | None:
        """A memory if either network is recurrent, else None (the plain collection path)."""
        return SequenceMemory(actor, critic, n) if is_recurrent(actor) or is_recurrent(critic) else None

    def reset(self) -> None:
        """Every env at an episode's start (after a reset of the envs)."""
        for name in ("actor_state", "critic_state"):
            state = getattr(self, name)
            if state is not None:
                setattr(self, name, torch.zeros_like(state))

    def begin(self) -> None:
        """A batch starts: remember the states its sequences start from."""
        a, c = self.actor_state, self.critic_state
        self._first = (None if a is None else a.clone(), None if c is None else c.clone())
        self._starts = [torch.zeros(self.n)]  # the states are already zero where an episode starts

    def act(self, actor: nn.Module, obs: Tensor) -> Distribution:
        """The recurrent actor's distribution for this step (its next state kept for :meth:`stepped`)."""
        assert self.actor_state is not None and isinstance(actor, Recurrent)
        dist, self._next = actor.step(obs, self.actor_state)
        return dist

    def stepped(self, done: np.ndarray) -> None:
        """The envs stepped; ``done`` ``[n]`` marks episodes that ended (their states are zeroed)."""
        flags = torch.from_numpy(np.asarray(done, np.float32))
        if self._next is not None:
            self.actor_state = self._next * (1.0 - flags).unsqueeze(-1)
            self._next = None
        self._starts.append(flags)

    def starts(self) -> Tensor:
        """Episode-start flags ``[T, N]`` of the batch (1: the state was zeroed before the step)."""
        return torch.stack(self._starts[:-1])

    def policy_input(self, obs: Tensor) -> Tensor | None:
        """The actor's packed sequences for the update (None for a feed-forward actor)."""
        first = self._first[0]
        return None if first is None else pack(obs, self.starts(), first)

    def critic_input(self, obs: Tensor) -> Tensor | None:
        """The critic's packed sequences for its fit (None for a feed-forward critic)."""
        first = self._first[1]
        return None if first is None else pack(obs, self.starts(), first)

    def values(
        self, critic: nn.Module, obs: Tensor, last_obs: Tensor, finals: dict[tuple[int, int], Tensor]
    ) -> tuple[Tensor, Tensor]:
        """V(s_t) and V(s_{t+1}) ``[T, N]`` by unrolling the recurrent critic over the batch from its
        state at the first step; V(final obs) at a truncation (``finals[(t, k)]``) continues env k's
        state after step t. The critic's state after the batch is kept for the next one."""
        state, starts = self._first[1], self.starts()
        assert state is not None and isinstance(critic, Recurrent)
        step = critic.step
        values = torch.empty(obs.shape[0], self.n)
        at_final: dict[tuple[int, int], Tensor] = {}
        for t in range(obs.shape[0]):
            v, state = step(obs[t], state * (1.0 - starts[t]).unsqueeze(-1))
            values[t] = v
            for t_k in [t_k for t_k in finals if t_k[0] == t]:  # the episode's last obs, from its state
                k = t_k[1]
                at_final[t_k] = step(finals[t_k][None], state[k : k + 1])[0][0]
        state = state * (1.0 - self._starts[-1]).unsqueeze(-1)  # episodes that ended at the last step
        next_values = torch.empty_like(values)
        next_values[:-1] = values[1:]
        next_values[-1] = step(last_obs, state)[0]
        for (t, k), v in at_final.items():
            next_values[t, k] = v
        self.critic_state = state
        return values, next_values

    def state_dict(self) -> dict[str, Any]:
        return {
            name: encode(getattr(self, name).numpy())
            for name in ("actor_state", "critic_state")
            if getattr(self, name) is not None
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in ("actor_state", "critic_state"):
            if getattr(self, name) is not None:
                saved = torch.from_numpy(np.asarray(decode(state[name]), np.float32))
                if saved.shape != getattr(self, name).shape:
                    raise ValueError(f"{name} of shape {tuple(saved.shape)} does not fit {self.n} envs")
                setattr(self, name, saved)
