"""Collecting batches from Gymnasium vector envs; running observation and reward normalisation.

This is the only module that knows Gymnasium's vector-env semantics. Envs are created with
``AutoresetMode.SAME_STEP``: when an episode ends, ``step`` returns the first observation of the
next episode and the last one of the ended episode in ``info["final_obs"]``, which is what
GAE needs to bootstrap V(s_T) at a truncation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from trustpg.accel.fallback import announce_off
from trustpg.accel.fast_actor import NumpyActor
from trustpg.core.distributions import Distribution
from trustpg.core.moments import RunningMeanStd
from trustpg.envs.envstate import capture_vector_env, decode, encode, failed_env_index, restore_vector_env
from trustpg.envs.source import EnvSource
from trustpg.envs.watchdog import StepTimeout, TimedVectorEnv, WorkerExited
from trustpg.errors import CheckpointError, EnvFault
from trustpg.nets.cnn import image_layout
from trustpg.sampling.sequences import SequenceMemory

#: Variance floor of the running normalisers.
NORM_EPS = 1e-8


STOPS = "the run stops here and the last checkpoint is unchanged."


@dataclass
class ObsNormalizer:
    """(obs − mean) / sqrt(var + eps), clipped; statistics updated between batches only. The last
    ``raw_tail`` entries (an action mask, :mod:`trustpg.envs.masking`) are passed through as they are."""

    rms: RunningMeanStd
    clip: float
    enabled: bool = True
    raw_tail: int = 0
    #: Keep uint8 (and boolean) frames as uint8 when not normalising: a CNN scales them itself.
    compact: bool = False
    _std: np.ndarray | None = field(init=False, repr=False, default=None)
    _std_of: np.ndarray | None = field(init=False, repr=False, default=None)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        if not self.enabled:  # frames for a CNN stay compact (uint8; booleans as 0/1)
            if self.compact and obs.dtype in (np.uint8, np.bool_):
                return obs.astype(np.uint8, copy=False)
            return np.asarray(obs, np.float32)
        return normalize_obs(obs, self.rms.mean, self.std(), self.clip, self.raw_tail)

    def std(self) -> np.ndarray:
        """sqrt(var + eps), computed once per state of the statistics (called on every step)."""
        var = self.rms.var
        # The statistics replace their arrays when they change.
        if self._std is None or self._std_of is not var:
            self._std, self._std_of = np.sqrt(var + NORM_EPS), var
        return self._std


def normalize_obs(
    obs: np.ndarray, mean: np.ndarray, std: np.ndarray, clip: float, raw_tail: int = 0
) -> np.ndarray:
    """clip((obs − mean) / std, ±clip) as float32, flattened per observation ``[B, D]`` → the same;
    the last ``raw_tail`` entries of each observation (an action mask) are left unchanged."""
    z = (obs - mean) / std
    z = np.clip(z, -clip, clip, out=z).astype(np.float32)
    if raw_tail:
        z[..., -raw_tail:] = obs[..., -raw_tail:]
    return z


def obs_handling(space: gym.Space, requested: bool, policy: str, images: bool = False) -> tuple[bool, bool]:
    """(normalise, keep frames compact) for observations of ``space``: images for a CNN (``policy``
    auto or cnn, :mod:`trustpg.nets.cnn`) stay uint8 and are not normalised, the CNN scales them
    (said once in the log), unless ``images`` (``normalize_images``) asks for per-cell
    normalisation too; anything else is normalised as ``requested``, in float32."""
    cnn = policy in ("auto", "cnn") and image_layout(space) is not None
    if cnn and requested and images:
        return True, False
    if cnn and requested:
        instead = "the CNN scales the pixels (normalize_images=true normalises them per cell)"
        announce_off("observation normalisation", "the observations are images", instead)
    return requested and not cnn, cnn


def make_vec_env(
    env_id: str, num_envs: int, vectorization: str = "sync", env_kwargs: dict | None = None
) -> gym.vector.VectorEnv:
    """The vector env trustpg trains on for a registered id (same-step autoreset; ``vectorization``:
    sync, async or envpool); unknown ids get close-match suggestions (:class:`EnvSource`)."""
    return EnvSource(env_id, env_kwargs).make_vec(num_envs, vectorization)


@dataclass(frozen=True)
class Batch:
    """One rollout, arrays of shape ``[T, N, ...]`` (T steps of N envs)."""

    obs: Tensor  # what the policy saw, flat rows [T, N, D]: normalised, or uint8 frames for a CNN
    actions: Tensor
    rewards: Tensor  # possibly scaled, as used for learning
    terminated: Tensor
    truncated: Tensor
    values: Tensor  # V(s_t)
    next_values: Tensor  # V(s_{t+1}); V(final obs) at truncation
    episode_returns: list[float] = field(default_factory=list)  # raw, episodes ended here
    episode_lengths: list[int] = field(default_factory=list)
    #: A recurrent actor's (critic's) packed sequences ``[N, ...]`` (:func:`trustpg.nets.recurrent.
    #: pack`): what the update (the critic fit) evaluates it on; None for a feed-forward network.
    policy_input: Tensor | None = None
    critic_input: Tensor | None = None


class Collector:
    """Steps a vector env with a policy; owns the current observations and episode counters."""

    def __init__(
        self,
        env: gym.vector.VectorEnv,
        seed: int,
        normalize_obs: bool,
        obs_clip: float,
        normalize_reward: bool,
        gamma: float,
        *,
        obs_rms: RunningMeanStd | None = None,
        ret_rms: RunningMeanStd | None = None,
        generator: torch.Generator | None = None,
        step_timeout: float = 0.0,
        compact_frames: bool = False,
    ) -> None:
        """``obs_rms``, ``ret_rms`` and ``generator`` let an owner (the Trainer) share the
        statistics and the action RNG it checkpoints; by default the collector makes its own.
        ``step_timeout``: seconds one vector-env step or reset may take (0 = no limit), see
        :mod:`trustpg.envs.watchdog`. ``normalize_obs`` and ``compact_frames``: as
        :func:`obs_handling` decides them for the run's network."""
        self.env = env
        self.timed = TimedVectorEnv(env, step_timeout)
        self.seed = seed
        if obs_rms is None:
            space = env.single_observation_space
            if space.shape is None:
                raise ValueError(f"unsupported observation space {space}; trustpg needs Box observations")
            obs_rms = RunningMeanStd(space.shape)
        # A mask at the end of each observation (envs.masking.MaskedObsBox) is not normalised.
        raw_tail = int(getattr(env.single_observation_space, "mask_dim", 0))
        self.obs_norm = ObsNormalizer(obs_rms, obs_clip, normalize_obs, raw_tail, compact_frames)
        self.ret_rms = (ret_rms or RunningMeanStd(())) if normalize_reward else None
        self.gamma = gamma
        self.generator = generator or torch.Generator().manual_seed(seed)
        self._obs: np.ndarray | None = None
        self._disc_ret = np.zeros(env.num_envs)
        self._ep_ret = np.zeros(env.num_envs)
        self._ep_len = np.zeros(env.num_envs, dtype=np.int64)
        self.total_steps = 0
        #: Recurrent states per env (made at the first collection with a recurrent network).
        self.memory: SequenceMemory | None = None
        self._memory_state: dict[str, Any] | None = None  # loaded before the memory exists
        #: No workers to restart in-process (see :class:`trustpg.sampling.protocol.Sampler`).
        self.restarts = 0
        self.timings: dict[str, float] = {}  # nothing broken down in-process (Sampler protocol)

    def reset(self, seed: int) -> np.ndarray:
        """Reset every env with ``seed``; returns the first observations."""
        with self.timed.guard():
            try:
                obs, _ = self.timed.reset(seed)
            except (StepTimeout, WorkerExited) as e:
                raise self._lost(e, -1) from e
        self._check(obs, None, -1)
        self._obs = obs
        self._disc_ret[:] = 0
        self._ep_ret[:] = 0
        self._ep_len[:] = 0
        if self.memory is not None:
            self.memory.reset()
        self._memory_state = None
        return obs

    def _check(self, obs: np.ndarray, rew: np.ndarray | None, t: int, envs: np.ndarray | None = None) -> None:
        """EnvFault if any row of ``obs`` (or ``rew``) is not finite; row k is env ``envs[k]`` (or k)."""
        if np.isfinite(obs).all() and (rew is None or np.isfinite(rew).all()):
            return  # the common case, checked with two calls per step
        bad = ~np.isfinite(obs).reshape(obs.shape[0], -1).all(1)
        if rew is not None:
            bad |= ~np.isfinite(rew)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            what = "observation" if rew is None or not np.isfinite(obs[i]).all() else f"reward ({rew[i]})"
            env = i if envs is None else int(envs[i])
            raise EnvFault(f"environment {env} returned a non-finite {what} {self._when(t)}; {STOPS}")

    def _when(self, t: int) -> str:
        """Where a fault happened: each env's step count in this run (t = -1: at reset)."""
        if t < 0:
            return "at reset"
        return f"at step {self.total_steps // self.env.num_envs + t + 1} (rollout step {t})"

    def _lost(self, e: StepTimeout | WorkerExited, t: int) -> EnvFault:
        """The EnvFault for a step (t >= 0) or reset (t = -1) that timed out or whose worker
        process ended; the vector env's worker processes are killed (closing would wait on them)."""
        self.timed.abandon()
        if isinstance(e, WorkerExited):
            return EnvFault(f"{e} {self._when(t)}; {STOPS}")
        what = "reset" if t < 0 else "step"
        found = e.envs or tuple(i for i in [failed_env_index(self.env, e)] if i is not None)
        envs = ", ".join(map(str, found))
        who = f"environment {envs}'s {what}" if len(found) == 1 else (
            f"the {what} of environments {envs}" if found else f"an environment {what}"
        )  # fmt: skip
        return EnvFault(
            f"{who} took longer than step_timeout={self.timed.timeout:g} s {self._when(t)}; {STOPS} "
            "Raise --step-timeout (0 = no limit) if your env is that slow."
        )

    @torch.no_grad()
    def collect(
        self, actor: nn.Module, critic: nn.Module, steps: int,
        critic_ready: Callable[[], None] | None = None,
    ) -> Batch:  # fmt: skip
        """``steps`` steps of every env with ``actor``; then ``critic_ready()`` (which may wait for
        a critic fit running meanwhile, see :class:`trustpg.train.value.CriticFitter`), then the values."""
        cur = self._obs if self._obs is not None else self.reset(self.seed)
        n = self.env.num_envs
        space = self.env.single_action_space
        box = space if isinstance(space, gym.spaces.Box) else None  # actions clipped to it
        obs_buf, act_buf, raw_buf = [], [], []
        rew = np.zeros((steps, n), np.float32)
        term = np.zeros((steps, n), bool)
        trunc = np.zeros((steps, n), bool)
        finals: dict[tuple[int, int], np.ndarray] = {}
        ep_returns: list[float] = []
        ep_lengths: list[int] = []
        memory = self._memory(actor, critic)
        recurrent = memory is not None and memory.actor_state is not None
        # The same distribution in NumPy, if actor.mlp_spec() declares it (a recurrent actor does not,
        # and attach says so once in the log).
        fast = NumpyActor.attach(actor)
        fast = None if recurrent else fast
        if memory is not None:
            memory.begin()
        with self.timed.guard():
            for t in range(steps):
                obs_np = self.obs_norm(cur).reshape(n, -1)  # flat rows; a CNN restores the frame
                obs_t = torch.from_numpy(obs_np)
                if fast is not None:
                    env_action = fast.sample(obs_np, self.generator)
                else:
                    dist: Distribution = memory.act(actor, obs_t) if recurrent else actor(obs_t)  # type: ignore[union-attr]
                    env_action = dist.sample(self.generator).numpy()
                obs_buf.append(obs_t)
                if self.obs_norm.enabled:
                    raw_buf.append(cur)
                act_buf.append(env_action)
                if box is not None:
                    env_action = np.clip(env_action, box.low, box.high)
                elif env_action.dtype != space.dtype:
                    env_action = env_action.astype(space.dtype)
                try:
                    next_obs, r, te, tr, info = self.timed.step(env_action)
                except (StepTimeout, WorkerExited) as e:
                    raise self._lost(e, t) from e
                except Exception as e:
                    failed = failed_env_index(self.env, e)
                    who = "an environment" if failed is None else f"environment {failed}"
                    raise EnvFault(f"{who} raised {type(e).__name__}: {e} {self._when(t)}; {STOPS}") from e
                self._check(next_obs, r, t)
                rew[t], term[t], trunc[t] = r, te, tr
                self._ep_ret += r
                self._ep_len += 1
                done = te | tr
                if memory is not None:
                    memory.stepped(done)
                if done.any():
                    ended = np.flatnonzero(done)
                    self._check(np.stack([info["final_obs"][i] for i in ended]), None, t, ended)
                    for i in ended:
                        ep_returns.append(float(self._ep_ret[i]))
                        ep_lengths.append(int(self._ep_len[i]))
                        if tr[i] and not te[i]:
                            finals[(t, int(i))] = info["final_obs"][i]
                    self._ep_ret[done] = 0
                    self._ep_len[done] = 0
                self._obs = cur = next_obs
        self.total_steps += steps * n
        if critic_ready is not None:
            critic_ready()
        obs = torch.stack(obs_buf)
        if memory is not None and memory.critic_state is not None:
            last = torch.from_numpy(self.obs_norm(cur).reshape(n, -1))
            at_end = {k: torch.from_numpy(self.obs_norm(v[None]).reshape(-1)) for k, v in finals.items()}
            values, next_values = memory.values(critic, obs, last, at_end)
            finals = {}
        else:
            values = critic(obs.reshape(steps * n, -1)).reshape(steps, n)
            next_values = torch.empty_like(values)
            next_values[:-1] = values[1:]
            next_values[-1] = critic(torch.from_numpy(self.obs_norm(cur).reshape(n, -1)))
        if finals:
            keys = list(finals)
            final_obs = torch.from_numpy(
                self.obs_norm(np.stack([finals[k] for k in keys])).reshape(len(keys), -1)
            )
            v_final = critic(final_obs)
            for (t, k), v in zip(keys, v_final):
                next_values[t, k] = v
        if self.obs_norm.enabled:
            self.obs_norm.rms.update(np.stack(raw_buf))
        rewards = torch.from_numpy(self._scale_rewards(rew, term | trunc))
        return Batch(
            obs, torch.from_numpy(np.stack(act_buf)), rewards, torch.from_numpy(term),
            torch.from_numpy(trunc), values, next_values, ep_returns, ep_lengths,
            memory.policy_input(obs) if memory else None, memory.critic_input(obs) if memory else None,
        )  # fmt: skip

    def _memory(self, actor: nn.Module, critic: nn.Module) -> SequenceMemory | None:
        if self.memory is None:
            self.memory = SequenceMemory.of(actor, critic, self.env.num_envs)
            if self.memory is not None and self._memory_state is not None:
                self.memory.load_state_dict(self._memory_state)
            self._memory_state = None
        return self.memory

    def _scale_rewards(self, rew: np.ndarray, done: np.ndarray) -> np.ndarray:
        """Rewards divided by the running std of the discounted return; the statistics take in
        the batch's returns at once (the same moments as step by step, up to rounding)."""
        if self.ret_rms is None:
            return rew
        returns = np.empty(rew.shape, np.float64)
        for t in range(rew.shape[0]):
            returns[t] = self._disc_ret = self._disc_ret * self.gamma + rew[t]
            self._disc_ret[done[t]] = 0.0
        self.ret_rms.update(returns)
        return (rew / np.sqrt(self.ret_rms.var + NORM_EPS)).astype(np.float32)

    def state_dict(self) -> dict[str, Any] | None:
        """JSON state to continue collecting exactly from here: current observations, episode
        counters and every sub-env's state (:mod:`trustpg.envs.envstate`); None before the first reset."""
        if self._obs is None:
            return None
        counters = {"obs": self._obs, "disc_ret": self._disc_ret, "ep_ret": self._ep_ret}
        counters["ep_len"] = self._ep_len
        state = {**{k: encode(v) for k, v in counters.items()}, "envs": capture_vector_env(self.env)}
        memory = self.memory.state_dict() if self.memory is not None else self._memory_state
        return {**state, "recurrent": memory} if memory else state

    def load_state_dict(self, state: dict) -> str | None:
        """Continue from :meth:`state_dict`. Returns None, or why the envs could not be restored
        (they are then freshly reset with ``self.seed``)."""
        self.reset(self.seed)
        try:
            why = restore_vector_env(self.env, state["envs"])
            if why is None:
                self._obs = decode(state["obs"])
                self._disc_ret, self._ep_ret = decode(state["disc_ret"]), decode(state["ep_ret"])
                self._ep_len = decode(state["ep_len"])
                self._memory_state = state.get("recurrent")  # applied when the networks are known
                if self.memory is not None and self._memory_state is not None:
                    self.memory.load_state_dict(self._memory_state)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError) as e:  # crafted
            raise CheckpointError(
                f"the env state in the checkpoint cannot be restored ({type(e).__name__}: {e}); "
                "it was edited or written for other envs: resume from another checkpoint"
            ) from None
        return why

    def close(self) -> None:
        self.env.close()
