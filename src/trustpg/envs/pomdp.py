"""Partially observed versions of classic control tasks: the velocities removed.

A policy that sees only positions must infer velocities from the history of its observations,
which a recurrent policy can and a feed-forward one cannot (the standard test of recurrent
policies since Wierstra et al. 2007; used by Ni et al. 2022, "Recurrent model-free RL can be a
strong baseline for many POMDPs"). :class:`KeepEntries` is the wrapper, for any env with a flat
``Box`` observation; two ids are registered when trustpg's env layer is imported:

* ``trustpg/CartPoleNoVel-v1``: CartPole-v1 observing (cart position, pole angle) only;
* ``trustpg/PendulumNoVel-v1``: Pendulum-v1 observing (cos θ, sin θ) only, no angular velocity.

Their time limits and rewards are those of the originals.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.classic_control import CartPoleEnv, PendulumEnv

from trustpg.envs.envstate import register_env_state

#: Entries of the original observations that are kept (the positions).
CARTPOLE_POSITIONS = (0, 2)
PENDULUM_POSITIONS = (0, 1)


class KeepEntries(gym.ObservationWrapper[np.ndarray, Any, np.ndarray]):
    """Observe only the entries ``keep`` of a flat ``Box`` observation (e.g. drop the velocities)."""

    def __init__(self, env: gym.Env, keep: Sequence[int]) -> None:
        super().__init__(env)
        space = env.observation_space
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            raise ValueError(f"KeepEntries needs a flat Box observation, got {space}")
        self.keep = [int(i) for i in keep]
        if not self.keep or any(not 0 <= i < space.shape[0] for i in self.keep):
            raise ValueError(f"keep={list(keep)} must name entries 0..{space.shape[0] - 1}")
        self.observation_space = gym.spaces.Box(
            space.low[self.keep], space.high[self.keep], dtype=space.dtype
        )

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return np.asarray(observation)[self.keep]


def cartpole_no_velocity(**kwargs: Any) -> gym.Env:
    return KeepEntries(CartPoleEnv(**kwargs), CARTPOLE_POSITIONS)


def pendulum_no_velocity(**kwargs: Any) -> gym.Env:
    return KeepEntries(PendulumEnv(**kwargs), PENDULUM_POSITIONS)


def register_pomdps() -> None:
    """Register the two ids (once; a second call is a no-op)."""
    ids = {
        "trustpg/CartPoleNoVel-v1": ("cartpole_no_velocity", 500, 475.0),
        "trustpg/PendulumNoVel-v1": ("pendulum_no_velocity", 200, None),
    }
    for env_id, (entry, steps, threshold) in ids.items():
        if env_id not in gym.registry:
            gym.register(
                env_id, entry_point=f"trustpg.envs.pomdp:{entry}", max_episode_steps=steps,
                reward_threshold=threshold,
            )  # fmt: skip


register_env_state(KeepEntries)  # its only state is the list of kept entries
register_pomdps()
