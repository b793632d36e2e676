"""The Python API: ``TRPO("Pendulum-v1", seed=0).learn(200_000)`` and friends."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from trustpg.config.train_config import TrainConfig, usable_cores
from trustpg.core.distributions import PROTOCOL_MEMBERS, missing_members
from trustpg.envs.source import EnvLike, EnvSource, flatten_if_needed, flatten_obs, recording
from trustpg.errors import CheckpointError, TrainingFault
from trustpg.io.checkpoint import load_checkpoint, save_checkpoint
from trustpg.io.logger import MetricsLogger, drop_rows_after
from trustpg.io.manifest import changed_since_start, record_session
from trustpg.io.progress import TrainProgress
from trustpg.io.rundir import check_not_foreign, checkpoint_file, locked, write_json
from trustpg.nets.policies import obs_dim
from trustpg.nets.recurrent import Recurrent
from trustpg.sampling.protocol import Sampler
from trustpg.train.callbacks import Callback, CallbackList
from trustpg.train.lifecycle import StopFlag, run_summary
from trustpg.train.trainer import Trainer, torch_threads

log = logging.getLogger("trustpg")
#: Overrides for loading a checkpoint only to act or evaluate: no training batch, no workers, so
#: a run trained with batches this machine cannot hold can still be evaluated here.
FOR_EVALUATION: dict[str, Any] = {"num_envs": 1, "steps_per_env": 1, "workers": 0, "vectorization": "sync"}
#: Steps after which evaluation cuts an episode of an env without a time limit (max_episode_steps).
EVAL_MAX_STEPS = 100_000


class Agent:
    """A policy with its critic, normaliser and update rule; trains, acts, evaluates, saves.

    ``env`` overrides ``config.env``: an id, a ``gymnasium.Env``, a vector env or a factory
    (see :class:`trustpg.envs.source.EnvSource`); objects are recorded in the config as ``custom:<name>``.
    ``policy`` replaces the default MLP actor: any ``nn.Module`` whose ``forward(obs)`` maps a
    float batch ``[B, obs_dim]`` to a :class:`trustpg.core.distributions.Distribution`.
    """

    def __init__(
        self, config: TrainConfig, policy: nn.Module | None = None, env: EnvLike | None = None
    ) -> None:
        source = None
        if isinstance(env, str):
            config = config.replace(env=env)
        elif env is not None:
            source = EnvSource(env)
            n = source.vector_num_envs
            config = config.replace(env=source.name, **({"num_envs": n} if n else {}))
            if config.workers > 0:
                raise ValueError(
                    f"workers={config.workers} needs a registered env id (Ray workers make their own "
                    "envs from it); register the env with gymnasium.register, or use workers=0"
                )
        self.config = config
        self.trainer = Trainer(config, actor=policy, env=source)
        if policy is not None:
            _check_policy(policy, self.trainer.observation_space)
        self._signals = StopFlag()

    @property
    def policy(self) -> nn.Module:
        return self.trainer.actor

    @property
    def critic(self) -> nn.Module:
        """The value function V(s) (on normalised observations, as the policy)."""
        return self.trainer.critic

    @property
    def observation_space(self) -> gym.Space:
        """One env's observation space as the policy sees it (flattened)."""
        return self.trainer.observation_space

    @property
    def action_space(self) -> gym.Space:
        return self.trainer.action_space

    @property
    def num_timesteps(self) -> int:
        return self.trainer.env_steps

    def prepare(self) -> Agent:
        """Make the envs (or Ray workers) and start the critic worker now instead of in the first
        update, e.g. to time training from its first step (benchmarks/throughput.py)."""
        self.trainer.prepare()
        return self

    @property
    def sampler(self) -> Sampler | None:
        """What collects this agent's batches (None before :meth:`prepare` or the first update);
        its ``timings`` break the last collection's seconds down (benchmarks/scaling.py)."""
        return self.trainer.collector

    def learn(
        self,
        total_steps: int,
        callback: Callback | Sequence[Callback] | None = None,
        *,
        run_dir: str | os.PathLike | None = None,
        progress: bool | None = None,
    ) -> Agent:
        """Train for ``total_steps`` more environment steps.

        ``callback(row)`` gets each update's :class:`~trustpg.io.record.UpdateRecord` (it reads like
        a dict of the metrics.csv columns); returning False stops training.
        A list of callbacks runs in order (see :mod:`trustpg.train.callbacks`).
        With ``run_dir`` the run writes ``config.json``, ``manifest.json`` (code, stack, machine,
        command; :mod:`trustpg.io.manifest`), ``metrics.csv``, TensorBoard events,
        checkpoints and, when the steps are done, ``summary.json`` there (so ``trustpg plot``,
        ``eval`` and ``train --resume`` accept the directory); the directory is locked meanwhile,
        and SIGINT/SIGTERM stop the run cleanly after a final checkpoint. Runs with ``torch_threads``
        threads and restores the caller's thread count afterwards.
        """
        if total_steps < 0:
            raise ValueError(f"total_steps must be >= 0, got {total_steps}")
        if isinstance(callback, Sequence):
            callback = CallbackList(callback)
        out = Path(run_dir) if run_dir is not None else None
        if out is None:
            with torch_threads(self.config.torch_threads):
                return self._learn(total_steps, callback, None, progress)
        if check_not_foreign(out) and self.trainer.updates == 0 and checkpoint_file(out).is_file():
            raise ValueError(
                f"{out} already holds a run; continue it with Agent.load('{checkpoint_file(out)}')"
                f".learn(steps, run_dir='{out}'), or choose another run_dir"
            )
        t0 = time.perf_counter()
        with locked(out), torch_threads(self.config.torch_threads):
            write_json(out / "config.json", self.config.to_dict())
            changed = changed_since_start(record_session(out, self.config.to_dict())["sessions"])
            if changed and self.trainer.updates > 0:
                why = "training continues, but not bit-identically to an uninterrupted run"
                log.warning(
                    "%s: resumed with %s; %s (docs/reliability.md, Determinism)", out, "; ".join(changed), why
                )
            self._learn(total_steps, callback, out, progress)
            if not self.interrupted:  # a finished run: plot, eval, compare and --resume read this
                write_json(out / "summary.json", run_summary(self, time.perf_counter() - t0))
        return self

    def _learn(
        self, total_steps: int, callback: Callback | None, out: Path | None, progress: bool | None
    ) -> Agent:
        c = self.config
        target = self.trainer.env_steps + total_steps
        if out and self.trainer.updates > 0:
            drop_rows_after(out / "metrics.csv", self.trainer.updates)
        logger = MetricsLogger(out, c.tensorboard, append=self.trainer.updates > 0) if out else None
        show = c.progress if progress is None else progress
        bar = TrainProgress(target, self.trainer.env_steps, enabled=show)
        self._signals.raised = False
        if out:
            self._signals.install()
        try:
            with bar:
                while self.trainer.env_steps < target and not self._signals.raised:
                    try:
                        row = self.trainer.iterate()
                    except TrainingFault as e:  # log the update that made the run stop
                        if logger and e.row is not None:
                            logger.write(e.row)
                        raise
                    if c.eval_every and self.trainer.updates % c.eval_every == 0:
                        row = row.replace(eval_return=self._periodic_eval(out))
                    if logger:
                        logger.write(row)
                    bar.update(row)
                    if out and c.checkpoint_every and self.trainer.updates % c.checkpoint_every == 0:
                        self.save(out / "checkpoints" / "last")
                    if callback is not None and callback(row) is False:
                        break
            self.trainer.critic_fit.finish()  # leave no fit running behind the caller's back
            if out:
                self.save(out / "checkpoints" / "last")
        finally:
            self._signals.restore()
            if logger:
                logger.close()
        return self

    @property
    def interrupted(self) -> bool:
        """True if the last ``learn`` stopped on SIGINT/SIGTERM."""
        return self._signals.raised

    def _periodic_eval(self, out: Path | None) -> float:
        mean, _, _ = self.evaluate(self.config.eval_episodes or 5, deterministic=True)
        if mean > self.trainer.best_eval:
            self.trainer.best_eval = mean
            if out:
                self.save(out / "checkpoints" / "best")
        return mean

    def predict(self, obs: Any, deterministic: bool = True) -> np.ndarray:
        """Action(s) for an observation or a batch of observations (raw, as the env returns them)."""
        raw = self.trainer.raw_observation_space
        if isinstance(obs, dict):
            x = flatten_obs(raw, obs)
        elif isinstance(obs, list | tuple) and obs and isinstance(obs[0], dict):
            x = np.stack([flatten_obs(raw, o) for o in obs])
        else:
            x = np.asarray(obs)
        single = x.shape == self.trainer.observation_space.shape
        a = self.trainer.act(x[None] if single else x, deterministic)
        return a[0] if single else a

    def evaluate(
        self,
        episodes: int = 10,
        deterministic: bool = True,
        seed: int | None = None,
        *,
        env: gym.Env | None = None,
        video: str | os.PathLike | None = None,
        max_episode_steps: int | None = None,
    ) -> tuple[float, float, list[float]]:
        """(mean, std, returns) of ``episodes`` full episodes on a fresh env (or on ``env``).

        ``video="out.mp4"`` records the first episode with Gymnasium's ``RecordVideo`` (needs
        the ``video`` extra, moviepy); the env is made with ``render_mode="rgb_array"``.
        An episode is cut after ``max_episode_steps`` steps (default: the env's own time limit,
        or :data:`EVAL_MAX_STEPS` with a warning for an env without one), so that a policy that
        never ends an episode cannot make evaluation run forever.
        """
        if episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {episodes}")
        if max_episode_steps is not None and max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be >= 1, got {max_episode_steps}")
        own = env is None  # close envs we make, leave the caller's open
        if env is None:
            env = self.trainer.env_source.make_one("rgb_array" if video is not None else None)
        else:
            env = flatten_if_needed(env)
        gen = torch.Generator().manual_seed(self.config.seed + 10_000)
        with contextlib.ExitStack() as stack:
            if own:
                stack.callback(env.close)
            if video is not None:
                env = stack.enter_context(recording(env, Path(video)))
            returns = self._episodes(env, episodes, deterministic, seed, gen, max_episode_steps)
        return float(np.mean(returns)), float(np.std(returns)), returns

    def _episodes(
        self, env: gym.Env, episodes: int, deterministic: bool, seed: int | None, gen: torch.Generator,
        max_steps: int | None = None,
    ) -> list[float]:  # fmt: skip
        returns = []
        base = self.config.seed + 10_000 if seed is None else seed
        limit = getattr(env.spec, "max_episode_steps", None) if env.spec is not None else None
        cap = max_steps or limit or EVAL_MAX_STEPS
        warned = max_steps is not None  # a cap the caller chose cuts episodes silently
        for ep in range(episodes):
            obs, _ = env.reset(seed=base + ep)
            total, done, t = 0.0, False, 0
            state: list[torch.Tensor] = []  # a recurrent policy's state, from its initial one
            while not done:
                action = self.trainer.act(np.asarray(obs)[None], deterministic, gen, state)[0]
                obs, r, term, trunc, _ = env.step(action)
                total += float(r)
                t += 1
                done = term or trunc
                if not done and t >= cap:
                    done = True
                    if not warned:
                        warned = True
                        log.warning(
                            "evaluation: episode %d reached %d steps without ending (the env has no "
                            "time limit); cut there — pass max_episode_steps to change this", ep, cap,
                        )  # fmt: skip
            returns.append(total)
        return returns

    def save(self, path: str | os.PathLike) -> Path:
        """Write a checkpoint (``path`` + ``.safetensors``): weights, normaliser, optimisers, RNGs."""
        tensors, meta = self.trainer.state()
        meta["policy_class"] = f"{type(self.policy).__module__}.{type(self.policy).__qualname__}"
        return save_checkpoint(path, tensors, meta)

    @staticmethod
    def load(
        path: str | os.PathLike,
        policy: nn.Module | None = None,
        env: EnvLike | None = None,
        **overrides: Any,
    ) -> Agent:
        """Rebuild an agent from a checkpoint. Pass ``policy`` if it was trained with a custom one,
        and ``env`` if it was trained on an env object or factory (config env ``custom:...``)."""
        tensors, meta = load_checkpoint(path)
        try:
            config = TrainConfig.from_dict({**_fit_threads(meta["config"], overrides), **overrides})
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{path}: checkpoint config is invalid: {e}") from None
        try:
            agent = Agent(config, policy, env)
        except ValueError as e:  # an env id unknown here, sizes this machine cannot hold, ...
            raise ValueError(f"{path}: {e}") from None  # the caller's to fix: named, same type
        try:
            agent.trainer.load_state(tensors, meta)
        except (KeyError, RuntimeError) as e:
            raise CheckpointError(f"{path}: checkpoint does not match the policy: {e}") from None
        return agent

    def close(self) -> None:
        self.trainer.close()


def _fit_threads(saved: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint made on a machine with more cores asks for more threads than this one may
    use: use this machine's cores instead (and say so) rather than refuse to load it."""
    cores = usable_cores()
    out = dict(saved)
    for name in ("torch_threads", "update_threads"):
        value = out.get(name)
        if name not in overrides and isinstance(value, int) and value > cores:
            log.warning(
                "the checkpoint asks for %s=%d; this machine has %d usable cores: using %d "
                "(results differ from the original machine's in rounding)", name, value, cores, cores,
            )  # fmt: skip
            out[name] = cores
    return out


def _check_policy(policy: nn.Module, observation_space: gym.Space) -> None:
    """Fail early, with the interface spelled out, if a custom policy does not return a distribution."""
    obs = torch.zeros(2, obs_dim(observation_space))  # a Box: the Trainer's critic checked that
    with torch.no_grad():
        # A recurrent policy: one step from its initial state (its forward takes packed sequences).
        out = policy.step(obs, policy.initial_state(2))[0] if isinstance(policy, Recurrent) else policy(obs)
    missing = missing_members(out)
    if missing:
        raise TypeError(
            f"policy.forward(obs) must return a trustpg.core.distributions distribution (Categorical, "
            f"MultiCategorical, Bernoulli, DiagGaussian or your own with {'/'.join(PROTOCOL_MEMBERS)}); "
            f"{type(policy).__name__} returned {type(out).__name__}, which lacks {', '.join(missing)}"
        )


class AlgorithmFactory:
    """``TRPO(env, **config)`` makes an :class:`Agent`; ``TRPO.load(path)`` loads one."""

    def __init__(self, algo: str) -> None:
        self.algo = algo
        self.__name__ = algo.upper()

    def __call__(
        self, env: EnvLike = "CartPole-v1", *, policy: nn.Module | str | None = None, **config: Any
    ) -> Agent:
        """An agent for ``env`` (id, ``gymnasium.Env``, vector env or factory); ``config`` are
        :class:`TrainConfig` fields; ``policy`` a network kind (``"mlp"``, ``"gru"``, ``"lstm"``:
        TrainConfig.policy) or a custom actor module."""
        if isinstance(policy, str):
            config["policy"], policy = policy, None
        return Agent(TrainConfig(algo=self.algo, **config), policy, env)  # type: ignore[arg-type]

    def load(
        self, path: str | os.PathLike, policy: nn.Module | None = None, env: EnvLike | None = None
    ) -> Agent:
        agent = Agent.load(path, policy, env)
        if agent.config.algo != self.algo:
            raise CheckpointError(
                f"{path} holds a {agent.config.algo.upper()} agent; use "
                f"{agent.config.algo.upper()}.load or trustpg.Agent.load"
            )
        return agent

    def __repr__(self) -> str:
        return f"trustpg.{self.__name__}"


TRPO = AlgorithmFactory("trpo")
NPG = AlgorithmFactory("npg")
VPG = AlgorithmFactory("vpg")
