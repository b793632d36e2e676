"""EnvPool as a Gymnasium vector env with same-step autoreset (``vectorization="envpool"``).

EnvPool steps a batch of envs in C++ threads, without Gymnasium's per-env Python. Its own Gymnasium
API autoresets in ``NEXT_STEP`` mode (the step after an episode ends returns the reset observation
with reward 0 and ignores the action) and, when an episode terminates on its last allowed step,
reports ``truncated`` only. :class:`EnvPoolVectorEnv` gives trustpg's
:class:`~trustpg.sampling.rollout.Collector` what Gymnasium's ``SyncVectorEnv`` gives it in
``AutoresetMode.SAME_STEP``:

- an env whose episode ends is reset in the same ``step`` (EnvPool resets just those envs on
  request); the returned observation is the reset one, the last one is in ``info["final_obs"]``
  (an object array, ``None`` for the others) with the mask ``info["_final_obs"]``, and the step's
  info in ``info["final_info"]`` / ``info["_final_info"]``;
- ``terminated`` comes from the env and ``truncated`` from a step counter kept here, as
  Gymnasium's ``TimeLimit`` (``max_episode_steps`` of the Gymnasium registration): both are True
  when an episode terminates on its last step. EnvPool's own limit is set past it;
- ``reset(seed=s)`` seeds env i with ``s + i`` (a new pool: EnvPool seeds only at creation), as
  Gymnasium's vector envs do; ``reset()`` continues the current random streams;
- the spaces are Gymnasium's (checked against EnvPool's); rewards are float64.

The physics is EnvPool's own MuJoCo build, so trajectories are not bit-identical to Gymnasium's
(docs/performance.md). Exact resume (``trustpg.envs.envstate``) cannot capture EnvPool's state: a
resumed run restarts its episodes and warns.
"""

from __future__ import annotations

import os
import secrets
from typing import Any

import gymnasium as gym
import numpy as np

INSTALL_HINT = "pip install 'trustpg[envpool]'"
#: EnvPool settings that belong to the pool, not to the env; never taken from env_kwargs.
_POOL_KEYS = frozenset({
    "num_envs", "batch_size", "num_threads", "max_num_players", "thread_affinity_offset", "base_path",
    "seed", "env_seed", "gym_reset_return_info", "max_episode_steps",
})  # fmt: skip
#: Info entries of EnvPool's own bookkeeping, not passed on.
_INFO_SKIP = frozenset({"env_id", "players", "elapsed_step"})
_SEED_LIMIT = 2**31  # EnvPool seeds are int32


def import_envpool() -> Any:
    """The ``envpool`` module, or ``MissingExtra`` naming the extra to install."""
    try:
        import envpool
    except ImportError as e:
        from trustpg.errors import MissingExtra

        raise MissingExtra(f"vectorization='envpool' needs EnvPool, not installed: {INSTALL_HINT}") from e
    return envpool


def check_envpool_env(env_id: str) -> Any:
    """The ``envpool`` module if it is installed and has ``env_id``; else a one-line error."""
    envpool = import_envpool()
    if env_id not in envpool.list_all_envs():
        raise ValueError(f"EnvPool has no environment {env_id!r}; use vectorization='sync' for it")
    return envpool


def _same_space(ours: gym.Space, theirs: gym.Space) -> bool:
    if isinstance(ours, gym.spaces.Box) and isinstance(theirs, gym.spaces.Box):
        return (ours.shape == theirs.shape and np.array_equal(ours.low, theirs.low)
                and np.array_equal(ours.high, theirs.high))  # fmt: skip
    if isinstance(ours, gym.spaces.Discrete) and isinstance(theirs, gym.spaces.Discrete):
        return ours.n == theirs.n and ours.start == theirs.start
    return False


class EnvPoolVectorEnv(gym.vector.VectorEnv):
    """``num_envs`` copies of ``env_id`` stepped by EnvPool, with Gymnasium's same-step autoreset.

    ``env_id`` must be registered in both Gymnasium (spaces, time limit, evaluation envs) and
    EnvPool. ``env_kwargs`` are Gymnasium ``make`` keyword arguments: ``max_episode_steps`` and
    the env parameters EnvPool also has (e.g. ``ctrl_cost_weight``). ``num_threads`` defaults to
    the cores this process may use.
    """

    metadata: dict[str, Any] = {  # noqa: RUF012 (an instance attribute in gym.vector.VectorEnv)
        "autoreset_mode": gym.vector.AutoresetMode.SAME_STEP,
        "render_modes": [],
    }

    def __init__(
        self, env_id: str, num_envs: int, env_kwargs: dict[str, Any] | None = None,
        num_threads: int | None = None,
    ) -> None:  # fmt: skip
        self._envpool = check_envpool_env(env_id)
        kwargs = dict(env_kwargs or {})
        self.num_threads = num_threads or min(num_envs, len(os.sched_getaffinity(0)))
        spec = gym.spec(env_id)
        limit = kwargs.pop("max_episode_steps", spec.max_episode_steps)
        self.max_episode_steps: int | None = None if limit is None else int(limit)
        self._config = dict(kwargs)
        bad = sorted(set(kwargs) - (set(self._envpool.make_spec(env_id).config._fields) - _POOL_KEYS))
        if bad:
            raise ValueError(f"env_kwargs {bad} are not parameters of EnvPool's {env_id}")
        pool_spec = self._envpool.make_spec(env_id, **self._pool_kwargs(num_envs, 0))
        probe = gym.make(env_id, **kwargs)
        obs_space, act_space = probe.observation_space, probe.action_space
        probe.close()
        for what, ours, theirs in (("observation", obs_space, pool_spec.gymnasium_observation_space),
                                   ("action", act_space, pool_spec.gymnasium_action_space)):  # fmt: skip
            if not _same_space(ours, theirs):
                raise ValueError(f"EnvPool's {env_id} {what} space {theirs} differs from Gymnasium's {ours}")
        self.env_id = env_id
        self.num_envs = num_envs
        self.single_observation_space = obs_space
        self.single_action_space = act_space
        self.observation_space = gym.vector.utils.batch_space(obs_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(act_space, num_envs)
        self._action_dtype = pool_spec.gymnasium_action_space.dtype
        self._elapsed = np.zeros(num_envs, np.int64)
        self._pool: Any = None
        self._ids = np.arange(num_envs, dtype=np.int32)

    def _pool_kwargs(self, num_envs: int, seed: int | list[int]) -> dict[str, Any]:
        # EnvPool's own time limit is past ours, so it never truncates (see the module docstring).
        limit = _SEED_LIMIT - 1 if self.max_episode_steps is None else self.max_episode_steps + 1
        seeds = {"env_seed": seed} if isinstance(seed, list) else {"seed": seed}
        return {**self._config, "num_envs": num_envs, "batch_size": num_envs, "num_threads": self.num_threads,
                "max_episode_steps": limit, **seeds}  # fmt: skip

    def _seeds(self, seed: int | list[int] | None) -> int | list[int]:
        """Validated seeds for a new pool (``None``: fresh entropy, as Gymnasium)."""
        if seed is None:
            seed = secrets.randbits(128) % (_SEED_LIMIT - self.num_envs)  # as np.random.SeedSequence()
        as_int = lambda s: int(s) if isinstance(s, np.integer) else s  # noqa: E731
        seed = as_int(seed) if not isinstance(seed, list | tuple) else [as_int(s) for s in seed]
        seeds = [seed + i for i in range(self.num_envs)] if isinstance(seed, int) else list(seed)
        if len(seeds) != self.num_envs or not all(isinstance(s, int) and 0 <= s < _SEED_LIMIT for s in seeds):
            raise ValueError(f"EnvPool seeds must be {self.num_envs} ints in [0, 2**31), got {seed!r}")
        return seed if isinstance(seed, int) else seeds

    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset every env; a ``seed`` (or the first reset) makes a new pool seeded with it."""
        if options:
            raise ValueError(f"EnvPoolVectorEnv.reset takes no options, got {sorted(options)}")
        if seed is not None or self._pool is None:
            self._close_pool()
            kwargs = self._pool_kwargs(self.num_envs, self._seeds(seed))
            self._pool = self._envpool.make(self.env_id, env_type="gymnasium", **kwargs)
        obs, info = self._pool.reset()
        obs = self._in_order(obs, info)
        self._elapsed[:] = 0
        return obs, self._info(info, np.asarray(info["env_id"]))

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """One step of every env; envs whose episode ended are reset before returning."""
        if self._pool is None:
            raise gym.error.ResetNeeded("call reset before step")
        pool_actions = np.ascontiguousarray(actions, dtype=self._action_dtype)
        obs, reward, terminated, _, info = self._pool.step(pool_actions, self._ids)
        order = np.asarray(info["env_id"])
        obs = self._in_order(obs, info)
        reward, terminated = self._put(order, reward, np.float64), self._put(order, terminated, bool)
        self._elapsed += 1
        if self.max_episode_steps is None:
            truncated = np.zeros(self.num_envs, bool)
        else:
            truncated = self._elapsed >= self.max_episode_steps
        infos = self._info(info, order)
        done = terminated | truncated
        if done.any():
            ended = np.flatnonzero(done).astype(np.int32)
            final_obs = np.full(self.num_envs, None, dtype=object)
            for i in ended:
                final_obs[i] = obs[i].copy()
            final_info = {k: v.copy() for k, v in infos.items()}
            for k in list(final_info):
                if k.startswith("_"):
                    final_info[k] &= done
            reset_obs, reset_info = self._pool.reset(ended)
            rows = np.asarray(reset_info["env_id"])
            obs[rows] = reset_obs
            for k, v in self._info(reset_info, rows).items():
                if not k.startswith("_") and k in infos:
                    infos[k][rows] = v[rows]
            for k in [k for k in infos if not k.startswith("_") and k not in reset_info]:
                infos["_" + k][rows] = False
            self._elapsed[ended] = 0
            infos.update(final_obs=final_obs, _final_obs=done.copy(), final_info=final_info,
                         _final_info=done.copy())  # fmt: skip
        return obs, reward, terminated, truncated, infos

    def _put(self, order: np.ndarray, values: np.ndarray, dtype: Any) -> np.ndarray:
        """``values`` (row k belongs to env ``order[k]``) as an array indexed by env."""
        out = np.empty(self.num_envs, dtype)
        out[order] = values
        return out

    def _in_order(self, obs: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        out = np.empty((self.num_envs, *obs.shape[1:]), self.single_observation_space.dtype)
        out[np.asarray(info["env_id"])] = obs
        return out

    def _info(self, info: dict[str, Any], order: np.ndarray) -> dict[str, Any]:
        """EnvPool's per-env info entries in Gymnasium's vector layout (value array + ``_key`` mask)."""
        out: dict[str, Any] = {}
        for k, v in info.items():
            if k in _INFO_SKIP or not isinstance(v, np.ndarray) or v.shape[:1] != order.shape:
                continue
            full = np.zeros((self.num_envs, *v.shape[1:]), v.dtype)
            full[order] = v
            mask = np.zeros(self.num_envs, bool)
            mask[order] = True
            out[k], out["_" + k] = full, mask
        return out

    def _close_pool(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def close_extras(self, **kwargs: Any) -> None:
        """Release the EnvPool (its C++ threads)."""
        self._close_pool()
