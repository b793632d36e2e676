"""A toy env with invalid actions, for the action-masking tests.

Every step draws a target action per action dimension and a random set of valid actions that
contains it; the observation shows the targets (one-hot). Reward: the fraction of dimensions whose
action hits its target; 20 steps an episode, so returns are in [0, 20]. An invalid action raises
(the env is strict), so a policy or sampler that ignores the mask stops training at once.
Uniform over the valid actions scores ≈ 8 per episode, a trained policy 20.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from trustpg.envs.envstate import register_env_state

EPISODE = 20
#: Registered when this module is imported (``trustpg train --env-module _masked_envs``):
#: MultiDiscrete (3, 4) actions, the mask in a Dict observation.
ENV_ID = "trustpg_test/PickTarget-v0"


class InvalidAction(AssertionError):
    """The agent took an action the mask forbids."""


class PickTarget(gym.Env):
    """``nvec`` = (n,) gives ``Discrete(n)`` actions, more entries ``MultiDiscrete(nvec)``;
    ``mask_in`` = "dict" puts the mask in a Dict observation, "info" in ``info["action_mask"]``,
    "feature" in a Dict key trustpg does not read as a mask (an ordinary observation, for
    measuring what masking costs); only then is an invalid action allowed (it scores 0)."""

    def __init__(self, nvec: tuple[int, ...] = (6,), mask_in: str = "dict") -> None:
        self.nvec = tuple(nvec)
        self.mask_in = mask_in
        k = sum(self.nvec)
        multi = len(self.nvec) > 1
        first = gym.spaces.Discrete(self.nvec[0])
        self.action_space = gym.spaces.MultiDiscrete(self.nvec) if multi else first
        target = gym.spaces.Box(0.0, 1.0, (k,), np.float32)
        if mask_in in ("dict", "feature"):
            mask = gym.spaces.MultiBinary(k)
            key = "action_mask" if mask_in == "dict" else "mask_feature"
            self.observation_space = gym.spaces.Dict({"target": target, key: mask})
        else:
            self.observation_space = target
        self._t = 0

    def _draw(self) -> None:
        rng = self.np_random
        self.targets = [int(rng.integers(n)) for n in self.nvec]
        masks = []
        for n, t in zip(self.nvec, self.targets):
            m = rng.random(n) < 0.5
            m[t] = True
            masks.append(m)
        self.mask = np.concatenate(masks).astype(np.int8)

    def _obs(self) -> tuple[Any, dict]:
        onehot = np.concatenate([np.eye(n, dtype=np.float32)[t] for n, t in zip(self.nvec, self.targets)])
        if self.mask_in == "dict":
            return {"target": onehot, "action_mask": self.mask.copy()}, {}
        if self.mask_in == "feature":
            return {"target": onehot, "mask_feature": self.mask.copy()}, {}
        return onehot, {"action_mask": self.mask.astype(bool)}

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        self._t = 0
        self._draw()
        return self._obs()

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        acts = np.atleast_1d(np.asarray(action)).astype(np.int64)
        offsets = np.cumsum((0, *self.nvec[:-1]))
        for d, a in enumerate(acts):
            if not self.mask[offsets[d] + a] and self.mask_in != "feature":
                raise InvalidAction(f"action {a} of dimension {d} is masked (mask {self.mask})")
        reward = float(np.mean([a == t for a, t in zip(acts, self.targets)]))
        self._t += 1
        self._draw()
        obs, info = self._obs()
        return obs, reward, False, self._t >= EPISODE, info


register_env_state(PickTarget)  # its state is plain attributes and np_random: exact resume
#: For benchmarks/policy_throughput.py: Discrete(6) and MultiDiscrete (3, 4), masked and with
#: the same mask as an ordinary observation feature (unmasked).
THROUGHPUT_IDS = {
    "trustpg_test/PickTarget6-v0": {"nvec": (6,), "mask_in": "dict"},
    "trustpg_test/PickTarget6Feature-v0": {"nvec": (6,), "mask_in": "feature"},
    "trustpg_test/PickTargetFeature-v0": {"nvec": (3, 4), "mask_in": "feature"},
}
for _id, _kwargs in {ENV_ID: {"nvec": (3, 4), "mask_in": "dict"}, **THROUGHPUT_IDS}.items():
    if _id not in gym.registry:
        gym.register(_id, entry_point=PickTarget, kwargs=_kwargs)
