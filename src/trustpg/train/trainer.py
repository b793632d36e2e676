"""The training loop: collect → GAE → policy update → critic fit → log. Each step a tested function."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from trustpg.config.train_config import TrainConfig, usable_cores
from trustpg.core.advantages import gae, normalize
from trustpg.core.distributions import Distribution
from trustpg.core.linalg import flat_params, set_flat_params
from trustpg.core.moments import RunningMeanStd
from trustpg.core.optim import Adam
from trustpg.core.update import PolicyBatch, StepStats, kl_budget
from trustpg.envs.source import EnvSource
from trustpg.errors import CheckpointError, TrainingFault
from trustpg.io.checkpoint import optimizer_from, optimizer_state, prefixed, unprefixed
from trustpg.io.record import UpdateRecord
from trustpg.nets.recurrent import is_recurrent
from trustpg.sampling.distributed import RayCollector
from trustpg.sampling.protocol import Sampler
from trustpg.sampling.rollout import NORM_EPS, Batch, Collector, obs_handling
from trustpg.train.build import check_memory_for, make_rule, networks
from trustpg.train.value import CriticFitter

log = logging.getLogger("trustpg")


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` intra-op threads, then restore the previous number."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def update_thread_count(requested: int) -> int:
    """Threads for the policy update: ``requested``, or for 0 min(2, cores this process may use)."""
    if requested > 0:
        return requested
    return max(1, min(2, usable_cores()))


def env_spaces(c: TrainConfig) -> tuple[gym.Space, gym.Space]:
    """Observation (flattened) and action spaces of one env of the run."""
    obs_space, act_space, _ = EnvSource(c.env, c.env_kwargs_dict()).spaces()
    return obs_space, act_space


class Trainer:
    """All state of a run: envs, networks, update rule, critic optimiser, RNGs and counters."""

    def __init__(
        self,
        config: TrainConfig,
        actor: nn.Module | None = None,
        spaces: tuple[gym.Space, gym.Space] | None = None,
        env: EnvSource | None = None,
    ) -> None:
        self.config = c = config
        # Envs given as objects (not ids) arrive as an EnvSource; ids are made from the config.
        self.env_source = env if env is not None else EnvSource(c.env, c.env_kwargs_dict())
        if spaces is None:
            self.observation_space, self.action_space, self.raw_observation_space = self.env_source.spaces()
        else:
            self.observation_space, self.action_space = spaces
            self.raw_observation_space = self.observation_space
        check_memory_for(c, self.observation_space, self.action_space, actor)
        # Orthogonal init (a QR) differs in the last bits with the thread count: fix both.
        with torch.random.fork_rng(), torch_threads(c.torch_threads):
            torch.manual_seed(c.seed)  # weight init only; the global RNG is left untouched
            self.actor, self.critic = networks(c, self.observation_space, self.action_space, actor)
        self.rule = make_rule(c)
        self.update_threads = update_thread_count(c.update_threads)
        self.vf_optimizer = Adam(self.critic.parameters(), lr=c.vf_lr)
        self.vf_generator = torch.Generator().manual_seed(c.seed + 1)
        self.critic_fit = CriticFitter(
            self.critic, self.vf_optimizer, self.vf_generator, epochs=c.vf_epochs,
            minibatch_size=c.vf_minibatch_size, overlap=c.critic_overlap and c.workers == 0,
            process=c.critic_process,
        )  # fmt: skip
        obs_shape = self.observation_space.shape
        assert obs_shape is not None  # a Box: obs_dim above accepts nothing else
        self.obs_rms = RunningMeanStd(obs_shape)
        self.ret_rms: RunningMeanStd | None = RunningMeanStd(()) if c.normalize_reward else None
        self.collector: Sampler | None = None
        self.action_generator = torch.Generator().manual_seed(c.seed + 2)
        self.updates = 0
        self.env_steps = 0
        self.episodes = 0
        self.wall_time = 0.0
        self.skips_in_row = 0
        self.best_eval = -math.inf
        #: Collector state from a loaded checkpoint, applied when the envs are made (issue 6).
        self.collector_state: dict[str, Any] | None = None

    # -- collection ---------------------------------------------------------------------------
    def prepare(self) -> None:
        """Create the envs (or Ray workers) and start the critic worker now rather than in the
        first update, e.g. to time training from its first step (benchmarks/throughput.py)."""
        self._ensure_collector()
        self.critic_fit.prepare()

    def _ensure_collector(self) -> Sampler:
        if self.collector is None and self.config.workers > 0:  # issue 7: Ray rollout workers
            self.collector = RayCollector(
                self.config, self.actor, self.critic, self.obs_rms, self.ret_rms,
                self.action_generator, self.updates,
            )  # fmt: skip
        if self.collector is None:
            c = self.config
            env = self.env_source.make_vec(c.num_envs, c.vectorization, c.train_time_limit)
            normalize, compact = obs_handling(
                env.single_observation_space, c.normalize_obs, c.policy, c.normalize_images
            )
            col = Collector(
                env, c.seed, normalize, c.obs_clip, c.normalize_reward, c.gamma,
                obs_rms=self.obs_rms, ret_rms=self.ret_rms, generator=self.action_generator,
                step_timeout=c.step_timeout, compact_frames=compact,
            )  # fmt: skip
            col.total_steps = self.env_steps
            if self.updates > 0:
                self._resume_collector(col)
            self.collector = col
        return self.collector

    def _resume_collector(self, col: Collector) -> None:
        """Continue the saved episodes bit-exactly; if the envs' state was not captured (see
        ``trustpg.envs.envstate``), restart them from a reset seeded by the update counter, and warn."""
        saved, self.collector_state = self.collector_state, None
        why = col.load_state_dict(saved) if saved is not None else "the checkpoint holds no env state"
        if why is not None:
            col.seed = self.config.seed + 7919 * self.updates
            col.reset(col.seed)
            log.warning(
                "resuming with fresh episodes, so this run will not match an uninterrupted one "
                "exactly: %s (see docs/reliability.md)", why,
            )  # fmt: skip

    @property
    def worker_restarts(self) -> int:
        """Ray rollout workers restarted so far by this trainer's sampler (0 in-process)."""
        return self.collector.restarts if self.collector is not None else 0

    def close(self) -> None:
        self.critic_fit.close()
        if self.collector is not None:
            self.collector.close()
            self.collector = None

    # -- one update -------------------------------------------------------------------------
    def iterate(self) -> UpdateRecord:
        """Collect one batch and update actor and critic; returns what the update did and cost."""
        c = self.config
        clock = _Clock()
        # The previous batch's critic fit may overlap this collection: the sampler waits for it
        # (critic_fit.finish) before it first uses the critic.
        sampler = self._ensure_collector()
        wait = clock.timed(self.critic_fit.finish, "critic_wait")
        with clock.phase("collect"):
            batch = sampler.collect(self.actor, self.critic, c.steps_per_env, wait)
        wait()
        vl_before, vl_after = self.critic_fit.take_losses()
        adv, returns = gae(
            batch.rewards, batch.values, batch.next_values, batch.terminated, batch.truncated,
            gamma=c.gamma, lam=c.gae_lambda,
        )  # fmt: skip
        obs = batch.obs.reshape(-1, *batch.obs.shape[2:])
        actions = batch.actions.reshape(-1, *batch.actions.shape[2:])
        if batch.policy_input is not None:  # a recurrent actor: whole sequences, states env-major
            obs, actions = batch.policy_input, batch.actions.transpose(0, 1).reshape(actions.shape)
            adv = adv.transpose(0, 1)
        adv = adv.reshape(-1)
        policy_adv = normalize(adv) if c.normalize_advantages else adv
        theta = flat_params(self.actor)
        rule = self.rule
        if c.max_kl_final is not None:  # the annealed budget; rules without one ignore it
            rule = rule.with_kl_budget(kl_budget(c.max_kl, c.max_kl_final, self.env_steps, c.steps))
        # The critic fit only starts after the update, so the update may use both threads.
        with clock.phase("update"), torch_threads(self.update_threads):
            stats = rule.update(self.actor, PolicyBatch(obs, actions, policy_adv, c.entropy_coef))
        stats = self._keep_finite(theta, stats)
        if batch.critic_input is not None:  # a recurrent critic is fitted on sequences [N, T]
            self.critic_fit.start(batch.critic_input, returns.transpose(0, 1).contiguous())
        else:
            self.critic_fit.start(batch.obs.reshape(-1, *batch.obs.shape[2:]), returns.reshape(-1))
        seconds = clock.elapsed()
        self.updates += 1
        self.env_steps += c.batch_size
        self.episodes += len(batch.episode_returns)
        self.wall_time += seconds
        self.skips_in_row = self.skips_in_row + 1 if stats.skipped else 0
        record = _record(self, stats, batch, (vl_before, vl_after), seconds, clock.spent)
        if self.skips_in_row >= c.max_consecutive_skips:
            raise TrainingFault(
                f"{self.skips_in_row} updates in a row were skipped (last: {stats.skip_reason}); "
                "stopping. Try a larger damping, a smaller max_kl or check the environment's rewards.",
                record,
            )
        return record

    def _keep_finite(self, theta: Tensor, stats: StepStats) -> StepStats:
        """Never keep NaN/inf actor parameters: the update rules restore θ themselves; this is the
        last line of defence (the critic's is in :class:`CriticFitter`)."""
        if not torch.isfinite(flat_params(self.actor)).all():
            set_flat_params(self.actor, theta)
            stats = dataclasses.replace(stats, skip_reason="non-finite parameters after the step")
        return stats

    # -- checkpoint state -------------------------------------------------------------------
    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """Everything needed to continue this run, as tensors and JSON (a pending critic fit is
        finished first; its losses, not yet in a metrics row, are saved for the next one)."""
        self.critic_fit.finish()
        tensors = {
            **prefixed("actor", self.actor.state_dict()),
            **prefixed("critic", self.critic.state_dict()),
            **prefixed("obs_rms", self.obs_rms.state_dict()),
            "rng.vf": self.vf_generator.get_state(),
            "rng.action": self.action_generator.get_state(),
        }
        if self.ret_rms is not None:
            tensors.update(prefixed("ret_rms", self.ret_rms.state_dict()))
        vf_t, vf_meta = optimizer_state("vf_opt", self.vf_optimizer.state_dict())
        tensors.update(vf_t)
        losses = [_finite_or_none(x) for x in self.critic_fit.losses]
        meta: dict[str, Any] = {"vf_opt": vf_meta, "value_losses_unreported": losses}
        rule_state = self.rule.state_dict()
        if rule_state:  # e.g. VPG's Adam moments; TRPO and NPG carry nothing
            pg_t, pg_meta = optimizer_state("pg_opt", rule_state)
            tensors.update(pg_t)
            meta["pg_opt"] = pg_meta
        meta.update(
            config=self.config.to_dict(), updates=self.updates, env_steps=self.env_steps,
            episodes=self.episodes, wall_time=self.wall_time, best_eval=_finite_or_none(self.best_eval),
            skips_in_row=self.skips_in_row,
        )  # fmt: skip
        # Not collected since loading (or a sampler that cannot capture its envs): keep the loaded
        # env state so a re-save loses nothing.
        col_state = self.collector.state_dict() if self.collector is not None else None
        meta["collector"] = col_state if col_state is not None else self.collector_state
        return tensors, meta

    def load_state(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        """Continue from :meth:`state`'s output (as :func:`trustpg.io.checkpoint.load_checkpoint`
        returns it); CheckpointError if tensors or optimiser state do not fit this trainer."""
        try:
            self._load_state(tensors, meta)
        except (KeyError, ValueError, TypeError, IndexError) as e:
            raise CheckpointError(
                f"its tensors or optimiser state do not fit ({type(e).__name__}: {e})"
            ) from None

    def _load_state(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        self.critic_fit.close()  # a fit still running must not write over the loaded critic
        self.actor.load_state_dict(unprefixed("actor", tensors))
        self.critic.load_state_dict(unprefixed("critic", tensors))
        self.obs_rms.load_state_dict(unprefixed("obs_rms", tensors))
        if self.ret_rms is not None:
            self.ret_rms.load_state_dict(unprefixed("ret_rms", tensors))
        self.vf_generator.set_state(tensors["rng.vf"])
        self.action_generator.set_state(tensors["rng.action"])
        self.vf_optimizer.load_state_dict(optimizer_from("vf_opt", tensors, meta["vf_opt"]))
        before, after = meta.get("value_losses_unreported") or (None, None)
        self.critic_fit.losses = tuple(math.nan if x is None else float(x) for x in (before, after))  # type: ignore[assignment]
        if "pg_opt" in meta:
            self.rule.load_state_dict(optimizer_from("pg_opt", tensors, meta["pg_opt"]))
        self.updates = int(meta["updates"])
        self.env_steps = int(meta["env_steps"])
        self.episodes = int(meta["episodes"])
        self.wall_time = float(meta["wall_time"])
        self.skips_in_row = int(meta.get("skips_in_row", 0))  # format 1 did not save it
        best = meta.get("best_eval")
        self.best_eval = -math.inf if best is None else float(best)
        self.close()  # envs are remade on the next update, in the saved state
        self.collector_state = meta.get("collector")

    # -- acting -----------------------------------------------------------------------------
    @torch.no_grad()
    def act(
        self, obs: np.ndarray, deterministic: bool, generator: torch.Generator | None = None,
        state: list[Tensor] | None = None,
    ) -> np.ndarray:  # fmt: skip
        """Actions for raw observations ``[B, ...]`` from the current policy (normalised as in training).

        A recurrent actor continues from ``state[0]`` (``[B, S]``) and leaves its next state there;
        an empty list (an episode's first step) or no ``state`` starts from the initial state."""
        dist = self.distribution(obs, state)
        a = (dist.mode() if deterministic else dist.sample(generator)).numpy()
        if isinstance(self.action_space, gym.spaces.Box):
            return np.clip(a, self.action_space.low, self.action_space.high)
        return a.astype(self.action_space.dtype)

    @torch.no_grad()
    def distribution(self, obs: np.ndarray, state: list[Tensor] | None = None) -> Distribution:
        """The current policy's distribution for raw observations ``[B, ...]`` (``state`` as in
        :meth:`act`)."""
        c = self.config
        x = np.asarray(obs, np.float64)
        if obs_handling(self.observation_space, c.normalize_obs, c.policy, c.normalize_images)[0]:
            x = (x - self.obs_rms.mean) / np.sqrt(self.obs_rms.var + NORM_EPS)
            x = np.clip(x, -c.obs_clip, c.obs_clip)
            if tail := int(getattr(self.observation_space, "mask_dim", 0)):  # an action mask stays raw
                x[..., -tail:] = np.asarray(obs, np.float64)[..., -tail:]
        x_t = torch.as_tensor(x, dtype=torch.float32).reshape(x.shape[0], -1)
        if is_recurrent(self.actor):
            h = state[0] if state else self.actor.initial_state(x.shape[0])  # type: ignore[operator]
            dist, h = self.actor.step(x_t, h)  # type: ignore[operator]
            if state is not None:
                state[:] = [h]
        else:
            dist = self.actor(x_t)
        return dist


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


class _Clock:
    """Seconds of one update, in total and by phase (``collect``, ``update``, ``critic_wait``)."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.spent: dict[str, float] = {}

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.spent[name] = self.spent.get(name, 0.0) + time.perf_counter() - t

    def timed(self, fn: Callable[[], None], name: str) -> Callable[[], None]:
        def run() -> None:
            with self.phase(name):
                fn()

        return run


def _record(
    t: Trainer, s: StepStats, batch: Batch, value_losses: tuple[float, float], seconds: float,
    spent: dict[str, float],
) -> UpdateRecord:  # fmt: skip
    rets, lens = batch.episode_returns, batch.episode_lengths
    return UpdateRecord(
        update=t.updates, env_steps=t.env_steps, episodes=t.episodes,
        mean_return=float(np.mean(rets)) if rets else math.nan,
        mean_length=float(np.mean(lens)) if lens else math.nan,
        surrogate_before=s.surrogate_before, surrogate_after=s.surrogate_after,
        predicted_kl=s.predicted_kl, measured_kl=s.measured_kl,
        cg_residual=s.cg_residual, cg_iterations=s.cg_iterations,
        backtracks=s.backtracks, grad_angle=s.grad_angle, grad_norm=s.grad_norm,
        step_norm=s.step_norm, entropy=s.entropy, kl_max=s.kl_max, kl_reverse=s.kl_reverse,
        ng_angle=s.ng_angle, value_loss_before=value_losses[0], value_loss=value_losses[1],
        skipped=int(s.skipped), skip_reason=s.skip_reason,
        seconds=seconds, collect_seconds=spent.get("collect", 0.0),
        update_seconds=spent.get("update", 0.0), solve_seconds=s.solve_seconds,
        critic_wait_seconds=spent.get("critic_wait", 0.0),
        wall_time=t.wall_time,
        steps_per_sec=t.config.batch_size / seconds if seconds > 0 else math.nan,
        eval_return=math.nan, worker_restarts=t.worker_restarts,
    )  # fmt: skip
