"""Action masks travel in the observation: the last ``mask_dim`` entries of the flat vector.

An env declares which actions are valid in one of two ways:

- a ``Dict`` observation with the key ``"action_mask"`` (the PettingZoo / sb3-contrib convention):
  :class:`FlattenWithMask` flattens the other keys (as ``gymnasium.spaces.flatten`` would) and
  appends the mask, 1.0 for a valid action and 0.0 for an invalid one;
- ``info["action_mask"]`` from ``reset`` and ``step``: wrap the env in :class:`ActionMaskFromInfo`,
  which moves it into a Dict observation, then the above applies.

The flat space is a :class:`MaskedObsBox`, a ``Box`` that records ``mask_dim``. Everything
downstream finds the mask there and nowhere else: the default actor masks its categorical with
the last ``mask_dim`` entries (``nets.policies.Actor``), the observation normaliser leaves them
raw, the critic sees them as inputs. Because the mask is part of the observation, it is stored in
the batch with it and every re-evaluation of the policy in the update (surrogate, KL,
Fisher-vector products, line search) sees the same mask as the sampling did.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from trustpg.envs.envstate import register_env_state

MASK_KEY = "action_mask"


class MaskedObsBox(gym.spaces.Box):
    """A flat observation ``Box`` whose last ``mask_dim`` entries are an action mask (0/1)."""

    def __init__(self, low: np.ndarray, high: np.ndarray, mask_dim: int, dtype: Any = np.float32) -> None:
        super().__init__(low, high, dtype=dtype)
        self.mask_dim = int(mask_dim)

    def __repr__(self) -> str:
        return f"MaskedObsBox({self.shape}, mask_dim={self.mask_dim})"


def mask_dim(space: gym.Space) -> int:
    """How many trailing entries of a flat observation of ``space`` are an action mask (0: none)."""
    return int(getattr(space, "mask_dim", 0))


def has_mask_key(space: gym.Space) -> bool:
    """True for a ``Dict`` observation space with an ``"action_mask"`` key."""
    return isinstance(space, gym.spaces.Dict) and MASK_KEY in space.spaces


def _rest(space: gym.spaces.Dict) -> gym.spaces.Dict:
    return gym.spaces.Dict({k: s for k, s in space.spaces.items() if k != MASK_KEY})


def masked_flat_space(space: gym.spaces.Dict) -> MaskedObsBox:
    """The flat space of :func:`flatten_with_mask`: the other keys flattened, then the mask in [0, 1]."""
    k = gym.spaces.flatdim(space.spaces[MASK_KEY])
    low, high = [np.zeros(k, np.float32)], [np.ones(k, np.float32)]
    if len(space.spaces) > 1:
        rest = gym.spaces.flatten_space(_rest(space))
        if not isinstance(rest, gym.spaces.Box):
            raise ValueError(f"the observation besides {MASK_KEY!r} does not flatten to a Box: {space}")
        low, high = [rest.low.astype(np.float32), *low], [rest.high.astype(np.float32), *high]
    return MaskedObsBox(np.concatenate(low), np.concatenate(high), k)


def flatten_with_mask(space: gym.spaces.Dict, obs: dict[str, Any]) -> np.ndarray:
    """One Dict observation as ``[flatten(other keys), mask as 0.0/1.0]`` (float32)."""
    mask = np.asarray(obs[MASK_KEY], np.float32).reshape(-1)
    if len(space.spaces) == 1:
        return mask
    rest = _rest(space)
    flat = gym.spaces.flatten(rest, {k: obs[k] for k in rest.spaces})
    return np.concatenate([np.asarray(flat, np.float32), mask])


class FlattenWithMask(gym.ObservationWrapper):
    """A Dict observation with an ``"action_mask"`` key as one flat vector, the mask last."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        if not has_mask_key(env.observation_space):
            raise ValueError(f"FlattenWithMask needs a Dict observation with an {MASK_KEY!r} key")
        self._dict_space: gym.spaces.Dict = env.observation_space  # type: ignore[assignment]
        self.observation_space = masked_flat_space(self._dict_space)

    def observation(self, observation: Any) -> np.ndarray:
        return flatten_with_mask(self._dict_space, observation)


def action_mask_size(space: gym.Space) -> int:
    """Entries of an action mask for ``space``: n for ``Discrete(n)``, Σ nvec for ``MultiDiscrete``."""
    if isinstance(space, gym.spaces.Discrete):
        return int(space.n)
    if isinstance(space, gym.spaces.MultiDiscrete):
        return int(np.sum(space.nvec))
    raise ValueError(f"action masks need Discrete or MultiDiscrete actions, got {space}")


class ActionMaskFromInfo(gym.Wrapper):
    """Moves ``info["action_mask"]`` (from ``reset`` and every ``step``) into the observation, as
    ``{"observation": obs, "action_mask": mask}``; trustpg then flattens it with the mask last.
    An env that leaves the key out of ``info`` raises a ValueError naming the call."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        k = action_mask_size(env.action_space)
        self.observation_space = gym.spaces.Dict(
            {"observation": env.observation_space, MASK_KEY: gym.spaces.MultiBinary(k)}
        )

    def _with_mask(self, obs: Any, info: dict[str, Any], call: str) -> dict[str, Any]:
        if MASK_KEY not in info:
            raise ValueError(
                f"{call} returned no info[{MASK_KEY!r}] (ActionMaskFromInfo needs it every time)"
            )
        return {"observation": obs, MASK_KEY: np.asarray(info[MASK_KEY], np.int8)}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        obs, info = self.env.reset(seed=seed, options=options)
        return self._with_mask(obs, info, "reset"), info

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict]:
        obs, r, term, trunc, info = self.env.step(action)
        return self._with_mask(obs, info, "step"), r, term, trunc, info


# Stateless wrappers: their (empty) plain attributes are their state, for exact resume.
register_env_state(FlattenWithMask)
register_env_state(ActionMaskFromInfo)
