"""A CartPole that misbehaves on purpose, for the fault-injection tests (issue 6).

Registered on import as ``trustpg_test/FaultyCartPole-v0``. Sub-env ``fault_env`` of the vector env
(told apart by its reset seed: the vector env seeds env i with ``seed + i``) misbehaves at its
``fault_step``-th step of the run: ``mode`` is ``nan_obs``, ``inf_reward``, ``raise``, ``hang``
(sleeps forever; ``fault_step=0``: in its first reset), ``exit`` (``os._exit(3)``: for async
workers only, it would end the trainer itself in a sync vector env), ``nan_final_obs`` (the
episode ends there with a NaN in its final observation, which the vector env passes in
``info["final_obs"]``) or ``nan_reset_obs`` (the episode ends there and the reset that follows
returns a NaN).
"""

from __future__ import annotations

import os
import time
from typing import ClassVar

import gymnasium as gym
import numpy as np
from gymnasium.envs.classic_control import CartPoleEnv

ENV_ID = "trustpg_test/FaultyCartPole-v0"
MODES = ("nan_obs", "inf_reward", "raise", "hang", "exit", "nan_final_obs", "nan_reset_obs")


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
        if self.mode == "hang" and self.fault_step == 0 and self.index == self.fault_env:
            _sleep_forever()
        obs, info = self.inner.reset(seed=seed, options=options)
        if (
            self.mode == "nan_reset_obs"
            and self.index == self.fault_env
            and self.steps >= self.fault_step > 0
        ):
            obs = obs.copy()
            obs[0] = np.nan
        return obs, info

    def step(self, action):
        self.steps += 1
        obs, reward, terminated, truncated, info = self.inner.step(action)
        if self.index == self.fault_env and self.steps == self.fault_step:
            if self.mode == "raise":
                raise RuntimeError("simulated crash in the physics engine")
            if self.mode == "hang":
                _sleep_forever()
            if self.mode == "exit":
                os._exit(3)
            if self.mode in ("nan_final_obs", "nan_reset_obs"):
                terminated = True
            if self.mode in ("nan_obs", "nan_final_obs"):
                obs = obs.copy()
                obs[2] = np.nan
            elif self.mode == "inf_reward":
                reward = float("inf")
        return obs, reward, terminated, truncated, info


def _sleep_forever() -> None:
    while True:
        time.sleep(3600)


if ENV_ID not in gym.registry:
    gym.register(ENV_ID, entry_point=FaultyCartPole, max_episode_steps=500)
