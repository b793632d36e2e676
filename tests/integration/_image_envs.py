"""A tiny image env for the CNN tests (no MinAtar or ALE needed): a 12×12 uint8 frame with one lit
column; reward 1 when the action names the side it is on (left/right), else 0. A uniform policy
earns 0.5 per step, one that reads the frame 1. Episodes are truncated after ``horizon`` steps.
Registered as ``trustpg_test/LitSide-v0``; its state is plain attributes (exact resume)."""

from __future__ import annotations

from typing import ClassVar

import gymnasium as gym
import numpy as np

from trustpg.envs.envstate import register_env_state

ENV_ID = "trustpg_test/LitSide-v0"
SIZE = 12


class LitSide(gym.Env):
    metadata: ClassVar[dict] = {"render_modes": []}

    def __init__(self, horizon: int = 20) -> None:
        self.horizon = horizon
        self.observation_space = gym.spaces.Box(0, 255, (SIZE, SIZE, 1), np.uint8)
        self.action_space = gym.spaces.Discrete(2)
        self._t = 0
        self._col = 0

    def _frame(self) -> np.ndarray:
        frame = np.zeros((SIZE, SIZE, 1), np.uint8)
        frame[:, self._col, 0] = 255
        return frame

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t, self._col = 0, int(self.np_random.integers(SIZE))
        return self._frame(), {}

    def step(self, action):
        reward = float(int(action) == int(self._col >= SIZE // 2))
        self._t += 1
        self._col = int(self.np_random.integers(SIZE))
        return self._frame(), reward, False, self._t >= self.horizon, {}


if ENV_ID not in gym.registry:
    gym.register(ENV_ID, entry_point=LitSide)
register_env_state(LitSide)
