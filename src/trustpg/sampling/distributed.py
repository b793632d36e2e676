"""Rollout workers on a Ray cluster (issue 7): ``trustpg train --workers N [--ray-address ADDR]``.

Each of the N workers is a Ray actor owning a :class:`~trustpg.sampling.rollout.Collector` over a vector
env of ``num_envs / N`` envs, so the batch (``num_envs × steps_per_env``) and therefore the
learning algorithm are the same for every N; more workers only step the same envs in more
processes. Worker i, created at update u, resets its envs with seeds ``seed + 7919·u + i·num_envs/N``
and onwards: together the workers step exactly the envs of the in-process sampler. Actions are
drawn from the trainer's generator on worker 0 and from a generator seeded by
``SeedSequence((seed, i, u))`` on worker i > 0, so one worker reproduces the in-process run
bit for bit and N workers with one seed always give the same run.

Per iteration the learner ``ray.put``s the actor and critic weights and the frozen observation
statistics once; every worker normalises with those statistics (as the in-process Collector
does within an iteration) and returns its rollout with raw rewards, the moments (count, mean,
variance) of its raw observations and, with reward normalisation, the per-step moments of its
discounted returns. The learner concatenates the rollouts along the env axis, merges the moments
with the parallel-variance formula of Chan, Golub & LeVeque (1979) and scales the rewards, which
is exactly what :meth:`Collector.collect` does with all envs in one process.

A worker that dies (``ray.exceptions.RayActorError``) is re-created with fresh envs and its share
of the iteration collected again; the event is reported as a :class:`WorkerRestarted` warning and
counted in the ``worker_restarts`` metric.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from trustpg.config.train_config import TrainConfig
from trustpg.core.moments import Moments, RunningMeanStd, combine_all
from trustpg.envs.source import EnvSource, is_custom
from trustpg.errors import EnvFault, MissingExtra
from trustpg.sampling.ray_connect import connect_ray, keeping_signal_handlers
from trustpg.sampling.rollout import NORM_EPS, Batch, Collector, obs_handling

RAY_HINT = "pip install 'trustpg[ray]'"
#: A worker index that dies this many times within one iteration stops the run.
MAX_RESTARTS_PER_ITERATION = 3
#: Seed stride between updates, as the in-process sampler uses for a resumed run (trainer.py).
UPDATE_SEED_STRIDE = 7919


class WorkerRestarted(RuntimeWarning):
    """A Ray rollout worker died and was replaced; its share of the batch was collected again."""


def import_ray() -> Any:
    """The ``ray`` module, or :class:`MissingExtra` naming the extra to install."""
    try:
        import ray
    except ImportError as e:
        raise MissingExtra(f"--workers needs Ray, which is not installed: {RAY_HINT}") from e
    return ray


class FrozenStats:
    """Stands in for the ``RunningMeanStd`` of a worker's Collector: the normaliser reads the
    learner's frozen ``mean``/``var``; ``update`` records the batch's moments for the learner
    instead of applying them."""

    def __init__(self, mean: np.ndarray, var: np.ndarray) -> None:
        self.mean, self.var = mean, var
        self.recorded: list[Moments] = []

    def update(self, x: np.ndarray) -> None:
        self.recorded.append(Moments.of(x, self.mean.shape))


@dataclass(frozen=True)
class WorkerResult:
    """One worker's share of an iteration."""

    batch: Batch  # rewards are raw (unscaled)
    obs_moments: Moments | None  # raw observations of the rollout
    disc_returns: np.ndarray | None  # [T, envs] discounted returns (reward normalisation)
    rng_state: Tensor  # the action generator after the rollout
    seconds: float  # time spent collecting inside the worker


class RolloutWorker:
    """A Collector over ``num_envs / workers`` envs; run as a Ray actor by :class:`RayCollector`."""

    def __init__(
        self, config: TrainConfig, actor: nn.Module, critic: nn.Module, env_seed: int,
        rng_state: Tensor,
    ) -> None:  # fmt: skip
        c = config
        torch.set_num_threads(c.torch_threads)
        n = c.num_envs // c.workers
        env = EnvSource(c.env, c.env_kwargs_dict()).make_vec(n, c.vectorization, c.train_time_limit)
        # Rewards stay raw here: the learner scales them with statistics merged over all workers.
        normalize, compact = obs_handling(
            env.single_observation_space, c.normalize_obs, c.policy, c.normalize_images
        )
        self.collector = Collector(
            env, env_seed, normalize, c.obs_clip, False, c.gamma, step_timeout=c.step_timeout,
            compact_frames=compact,
        )  # fmt: skip
        self.collector.generator.set_state(rng_state)
        self.actor, self.critic = actor, critic
        self.gamma = c.gamma
        self.normalize_reward = c.normalize_reward
        self._disc_ret = np.zeros(n)

    def collect(self, weights: dict[str, Any], steps: int) -> WorkerResult:
        t0 = time.perf_counter()
        self.actor.load_state_dict(weights["actor"])
        self.critic.load_state_dict(weights["critic"])
        stats = FrozenStats(weights["obs_mean"], weights["obs_var"])
        self.collector.obs_norm.rms = stats  # type: ignore[assignment]
        batch = self.collector.collect(self.actor, self.critic, steps)
        obs_m = combine_all(stats.recorded) if stats.recorded else None
        ret_m = self._discounted_returns(batch) if self.normalize_reward else None
        rng = self.collector.generator.get_state()
        return WorkerResult(batch, obs_m, ret_m, rng, time.perf_counter() - t0)

    def _discounted_returns(self, batch: Batch) -> np.ndarray:
        # The recursion of Collector._scale_rewards, on this worker's envs.
        rew = batch.rewards.numpy()
        done = (batch.terminated | batch.truncated).numpy()
        out = np.empty(rew.shape, np.float64)
        for t in range(rew.shape[0]):
            out[t] = self._disc_ret = self._disc_ret * self.gamma + rew[t]
            self._disc_ret[done[t]] = 0.0
        return out

    def ping(self) -> bool:
        return True


def worker_seed(seed: int, index: int, update: int) -> int:
    """Seed of the action generator of worker ``index > 0`` created at ``update``."""
    return int(np.random.SeedSequence((seed, index, update)).generate_state(1, np.uint64)[0] >> 1)


def merge(results: list[WorkerResult], obs_rms: RunningMeanStd, ret_rms: RunningMeanStd | None) -> Batch:
    """One batch from the workers' shares (env axis in worker order); updates the normalisers."""
    obs_ms = [r.obs_moments for r in results if r.obs_moments is not None]
    if obs_ms:
        m = combine_all(obs_ms)
        obs_rms.update_from_moments(m.count, m.mean, m.var)
    bs = [r.batch for r in results]
    rewards = torch.cat([b.rewards for b in bs], 1)
    if ret_rms is not None:
        per_worker = [r.disc_returns for r in results if r.disc_returns is not None]
        assert len(per_worker) == len(results)  # every worker sends them when rewards are normalised
        ret_rms.update(np.concatenate(per_worker, 1))  # as Collector._scale_rewards: all at once
        scaled = rewards.numpy() / np.sqrt(ret_rms.var + NORM_EPS)
        rewards = torch.from_numpy(scaled.astype(np.float32))
    return Batch(
        torch.cat([b.obs for b in bs], 1), torch.cat([b.actions for b in bs], 1), rewards,
        torch.cat([b.terminated for b in bs], 1), torch.cat([b.truncated for b in bs], 1),
        torch.cat([b.values for b in bs], 1), torch.cat([b.next_values for b in bs], 1),
        [x for b in bs for x in b.episode_returns], [x for b in bs for x in b.episode_lengths],
        _rows([b.policy_input for b in bs]), _rows([b.critic_input for b in bs]),
    )  # fmt: skip


def _rows(parts: list[Tensor | None]) -> Tensor | None:
    """Packed sequences of the workers, one row per env (env axis in worker order), or None."""
    return None if any(p is None for p in parts) else torch.cat(parts, 0)  # type: ignore[arg-type]


class RayCollector:
    """The Ray :class:`~trustpg.sampling.protocol.Sampler`, a drop-in for
    :class:`~trustpg.sampling.rollout.Collector` in the Trainer.

    ``obs_rms``, ``ret_rms`` and ``generator`` are the trainer's (checkpointed) objects: the
    normalisers are updated with the merged statistics, ``generator`` follows worker 0.
    ``timings`` holds the cost breakdown of the last ``collect`` (seconds; benchmarks/scaling.py).
    """

    def __init__(
        self, config: TrainConfig, actor: nn.Module, critic: nn.Module, obs_rms: RunningMeanStd,
        ret_rms: RunningMeanStd | None, generator: torch.Generator, update: int,
    ) -> None:  # fmt: skip
        c = self.config = config
        if is_custom(c.env):
            raise ValueError(
                "--workers needs a registered env id (workers build their own envs); "
                f"{c.env!r} was passed as a Python object"
            )
        self._ray = ray = import_ray()
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            with keeping_signal_handlers():  # SIGTERM: finish the update and checkpoint
                if c.ray_address:
                    connect_ray(ray, c.ray_address)
                else:  # a local instance; as many CPUs as workers so that no actor waits forever
                    ray.init(num_cpus=max(os.cpu_count() or 1, c.workers), include_dashboard=False)
        self._remote = ray.remote(num_cpus=1)(RolloutWorker)
        self.obs_rms, self.ret_rms, self.generator = obs_rms, ret_rms, generator
        self.update = update
        self.restarts = 0
        self.timings: dict[str, float] = {}
        self._modules = (actor, critic)
        self.workers = [self._spawn(i, generator.get_state() if i == 0 else None) for i in range(c.workers)]

    def _spawn(self, index: int, rng_state: Tensor | None) -> Any:
        c = self.config
        if rng_state is None:
            rng_state = torch.Generator().manual_seed(worker_seed(c.seed, index, self.update)).get_state()
        env_seed = c.seed + UPDATE_SEED_STRIDE * self.update + index * (c.num_envs // c.workers)
        actor, critic = self._modules
        return self._remote.remote(c, actor, critic, env_seed, rng_state)

    def collect(
        self, actor: nn.Module, critic: nn.Module, steps: int,
        critic_ready: Callable[[], None] | None = None,
    ) -> Batch:  # fmt: skip
        """``steps`` steps of every worker's envs; ``critic_ready()`` is called first, since the
        workers get the critic's weights with the actor's."""
        if critic_ready is not None:
            critic_ready()
        ray = self._ray
        t0 = time.perf_counter()
        weights = ray.put({
            "actor": actor.state_dict(), "critic": critic.state_dict(),
            "obs_mean": self.obs_rms.mean, "obs_var": self.obs_rms.var,
        })  # fmt: skip
        refs = [self._submit(i, weights, steps) for i in range(len(self.workers))]
        t1 = time.perf_counter()
        results = [self._result(i, ref, weights, steps) for i, ref in enumerate(refs)]
        t2 = time.perf_counter()
        batch = merge(results, self.obs_rms, self.ret_rms)
        self.generator.set_state(results[0].rng_state)
        self.update += 1
        sampling = max(r.seconds for r in results)
        self.timings = {
            "broadcast": t1 - t0, "sampling": sampling, "transfer": t2 - t1 - sampling,
            "merge": time.perf_counter() - t2,
        }  # fmt: skip
        return batch

    def _submit(self, index: int, weights: Any, steps: int) -> Any:
        return self.workers[index].collect.remote(weights, steps)

    def _result(self, index: int, ref: Any, weights: Any, steps: int) -> WorkerResult:
        ray = self._ray
        for attempt in range(MAX_RESTARTS_PER_ITERATION + 1):
            try:
                return ray.get(ref)
            except ray.exceptions.RayTaskError as e:
                if isinstance(e.cause, EnvFault):
                    raise e.cause from None
                raise
            except ray.exceptions.RayActorError as e:
                if attempt == MAX_RESTARTS_PER_ITERATION:
                    raise RuntimeError(
                        f"rollout worker {index} died {attempt + 1} times in update {self.update + 1}; "
                        f"stopping ({e})"
                    ) from e
                self.restarts += 1
                warnings.warn(
                    f"rollout worker {index} died in update {self.update + 1}; restarted it and "
                    f"collected its share again ({self.restarts} restart(s) so far)",
                    WorkerRestarted,
                    stacklevel=3,
                )
                self.workers[index] = self._spawn(index, None)
                ref = self._submit(index, weights, steps)
        raise AssertionError("unreachable")

    def state_dict(self) -> dict[str, Any] | None:
        """None: the workers' envs are not captured; a resumed run restarts their episodes."""
        return None

    def close(self) -> None:
        for w in self.workers:
            self._ray.kill(w)
        self.workers = []
        if self._owns_ray:
            self._ray.shutdown()
