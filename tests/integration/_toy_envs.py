"""A tiny env with Dict observations and MultiDiscrete actions, registered on import (as a
third-party package would be, for ``--env-module _toy_envs``).

Observation: {"pos": Box(-1, 1, (2,)), "flag": Discrete(3)}. Action: MultiDiscrete([3, 2]).
Reward per step: 1 if action[0] == flag, plus 1 if action[1] == (pos[0] > 0). A uniform policy
earns 5/6 per step, the optimal one 2. Episodes are truncated after ``horizon`` steps.

``trustpg_test/Endless-v0`` never ends an episode and is registered without a time limit
(reward 1 per step), for evaluation's episode cap.
"""

from __future__ import annotations

from typing import ClassVar

import gymnasium as gym
import numpy as np

ENV_ID = "trustpg_test/ToyDict-v0"
ENDLESS_ID = "trustpg_test/Endless-v0"


class ToyDictEnv(gym.Env):
    metadata: ClassVar[dict] = {"render_modes": []}

    def __init__(self, horizon: int = 10) -> None:
        self.horizon = horizon
        self.observation_space = gym.spaces.Dict(
            {"pos": gym.spaces.Box(-1.0, 1.0, (2,), np.float32), "flag": gym.spaces.Discrete(3)}
        )
        self.action_space = gym.spaces.MultiDiscrete([3, 2])
        self._t = 0
        self._obs: dict = {}

    def _draw(self) -> dict:
        pos = self.np_random.uniform(-1, 1, 2).astype(np.float32)
        return {"pos": pos, "flag": int(self.np_random.integers(3))}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        self._obs = self._draw()
        return self._obs, {}

    def step(self, action):
        a = np.asarray(action)
        reward = float(a[0] == self._obs["flag"]) + float(a[1] == int(self._obs["pos"][0] > 0))
        self._t += 1
        self._obs = self._draw()
        return self._obs, reward, False, self._t >= self.horizon, {}


class EndlessEnv(gym.Env):
    """Observation Box(-1, 1, (2,)), action Discrete(2), reward 1, never terminated or truncated."""

    metadata: ClassVar[dict] = {"render_modes": []}

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.np_random.uniform(-1, 1, 2).astype(np.float32), {}

    def step(self, action):
        return self.np_random.uniform(-1, 1, 2).astype(np.float32), 1.0, False, False, {}


if ENV_ID not in gym.registry:
    gym.register(ENV_ID, entry_point=ToyDictEnv)
if ENDLESS_ID not in gym.registry:
    gym.register(ENDLESS_ID, entry_point=EndlessEnv)  # no max_episode_steps: no TimeLimit
