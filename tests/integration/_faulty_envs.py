"""A CartPole that misbehaves on purpose, for the fault-injection tests (issue 6).

Registered on import as ``trustpg_test/FaultyCartPole-v0``. Sub-env ``fault_env`` of the vector env
(told apart by its reset seed: the vector env seeds env i with ``seed + i``) misbehaves at its
``fault_step``-th step of the run: ``mode`` is ``nan_obs``, ``inf_reward`` or ``raise``.
"""

from __future__ import annotations

from typing import ClassVar

import gymnasium as gym
import numpy as np
from gymnasium.envs.classic_control import CartPoleEnv

ENV_ID = "trustpg_test/FaultyCartPole-v0"
MODES = ("nan_obs", "inf_reward", "raise")


class FaultyCartPole(gym.Env):
    metadata: ClassVar[dict] = {"render_modes": []}

    def __init__(self, mode: str = "nan_obs", fault_env: int = 1, fault_step: int = 100, base_seed: int = 0):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.inner = CartPoleEnv()
        self.observation_space = self.inner.observation_space
        self.action_space = self.inner.action_space
        self.mode, self.fault_env, self.fault_step, self.base_seed = mode, fault_env, fault_step, base_seed
        self.index: int | None = None
        self.steps = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if seed is not None:
            self.index = seed - self.base_seed
        return self.inner.reset(seed=seed, options=options)

    def step(self, action):
        self.steps += 1
        obs, reward, terminated, truncated, info = self.inner.step(action)
        if self.index == self.fault_env and self.steps == self.fault_step:
            if self.mode == "raise":
                raise RuntimeError("simulated crash in the physics engine")
            if self.mode == "nan_obs":
                obs = obs.copy()
                obs[2] = np.nan
            else:
                reward = float("inf")
        return obs, reward, terminated, truncated, info


if ENV_ID not in gym.registry:
    gym.register(ENV_ID, entry_point=FaultyCartPole, max_episode_steps=500)
