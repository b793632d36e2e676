"""The Python API: ``TRPO("Pendulum-v1", seed=0).learn(200_000)`` and friends."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from trustpg.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from trustpg.config import TrainConfig
from trustpg.logger import MetricsLogger
from trustpg.progress import TrainProgress
from trustpg.trainer import Callback, Trainer


class Agent:
    """A policy with its critic, normaliser and update rule; trains, acts, evaluates, saves."""

    def __init__(self, config: TrainConfig, policy: nn.Module | None = None) -> None:
        self.config = config
        self.trainer = Trainer(config, actor=policy)
        self._stop = False

    @property
    def policy(self) -> nn.Module:
        return self.trainer.actor

    @property
    def num_timesteps(self) -> int:
        return self.trainer.env_steps

    def learn(
        self,
        total_steps: int,
        callback: Callback | None = None,
        *,
        run_dir: str | os.PathLike | None = None,
        progress: bool | None = None,
    ) -> Agent:
        """Train for ``total_steps`` more environment steps.

        ``callback(row)`` gets each update's metrics (a dict); returning False stops training.
        With ``run_dir`` the run writes ``metrics.csv``, TensorBoard events and checkpoints there,
        and SIGINT/SIGTERM stop it cleanly after a final checkpoint.
        """
        if total_steps < 0:
            raise ValueError(f"total_steps must be >= 0, got {total_steps}")
        c = self.config
        torch.set_num_threads(c.torch_threads)
        target = self.trainer.env_steps + total_steps
        out = Path(run_dir) if run_dir is not None else None
        logger = MetricsLogger(out, c.tensorboard, append=self.trainer.updates > 0) if out else None
        show = c.progress if progress is None else progress
        bar = TrainProgress(target, self.trainer.env_steps, enabled=show)
        old_handlers = _install_stop_handlers(self) if out else {}
        try:
            with bar:
                while self.trainer.env_steps < target and not self._stop:
                    row = self.trainer.iterate()
                    if c.eval_every and self.trainer.updates % c.eval_every == 0:
                        row["eval_return"] = self._periodic_eval(out)
                    if logger:
                        logger.write(row)
                    bar.update(row)
                    if out and c.checkpoint_every and self.trainer.updates % c.checkpoint_every == 0:
                        self.save(out / "checkpoints" / "last")
                    if callback is not None and callback(row) is False:
                        break
            if out:
                self.save(out / "checkpoints" / "last")
        finally:
            _restore_handlers(old_handlers)
            if logger:
                logger.close()
        return self

    @property
    def interrupted(self) -> bool:
        """True if the last ``learn`` stopped on SIGINT/SIGTERM."""
        return self._stop

    def _periodic_eval(self, out: Path | None) -> float:
        mean, _, _ = self.evaluate(self.config.eval_episodes or 5, deterministic=True)
        if mean > self.trainer.best_eval:
            self.trainer.best_eval = mean
            if out:
                self.save(out / "checkpoints" / "best")
        return mean

    def predict(self, obs: Any, deterministic: bool = True) -> np.ndarray:
        """Action(s) for an observation or a batch of observations (raw, as the env returns them)."""
        x = np.asarray(obs)
        single = x.shape == self.trainer.observation_space.shape
        a = self.trainer.act(x[None] if single else x, deterministic)
        return a[0] if single else a

    def evaluate(
        self, episodes: int = 10, deterministic: bool = True, seed: int | None = None
    ) -> tuple[float, float, list[float]]:
        """(mean, std, returns) of ``episodes`` full episodes on a fresh env."""
        if episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {episodes}")
        c = self.config
        env = gym.make(c.env, **c.env_kwargs_dict())
        gen = torch.Generator().manual_seed(c.seed + 10_000)
        returns = []
        try:
            base = c.seed + 10_000 if seed is None else seed
            for ep in range(episodes):
                obs, _ = env.reset(seed=base + ep)
                total, done = 0.0, False
                while not done:
                    action = self.trainer.act(np.asarray(obs)[None], deterministic, gen)[0]
                    obs, r, term, trunc, _ = env.step(action)
                    total += float(r)
                    done = term or trunc
                returns.append(total)
        finally:
            env.close()
        return float(np.mean(returns)), float(np.std(returns)), returns

    def save(self, path: str | os.PathLike) -> Path:
        """Write a checkpoint (``path`` + ``.safetensors``): weights, normaliser, optimisers, RNGs."""
        tensors, meta = self.trainer.state()
        meta["policy_class"] = f"{type(self.policy).__module__}.{type(self.policy).__qualname__}"
        return save_checkpoint(path, tensors, meta)

    @staticmethod
    def load(path: str | os.PathLike, policy: nn.Module | None = None, **overrides: Any) -> Agent:
        """Rebuild an agent from a checkpoint. Pass ``policy`` if it was trained with a custom one."""
        tensors, meta = load_checkpoint(path)
        try:
            config = TrainConfig.from_dict({**meta["config"], **overrides})
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{path}: checkpoint config is invalid: {e}") from None
        agent = Agent(config, policy)
        try:
            agent.trainer.load_state(tensors, meta)
        except (KeyError, RuntimeError) as e:
            raise CheckpointError(f"{path}: checkpoint does not match the policy: {e}") from None
        return agent

    def close(self) -> None:
        self.trainer.close()


def _install_stop_handlers(agent: Agent) -> dict[int, Any]:
    """SIGINT/SIGTERM set a flag; the loop finishes the current update, checkpoints and returns."""

    def handler(signum: int, _frame: Any) -> None:
        if agent._stop:  # second signal: give up immediately
            raise KeyboardInterrupt
        agent._stop = True

    old = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: leave signals alone
        pass
    return old


def _restore_handlers(old: dict[int, Any]) -> None:
    for sig, h in old.items():
        signal.signal(sig, h)


class AlgorithmFactory:
    """``TRPO(env, **config)`` makes an :class:`Agent`; ``TRPO.load(path)`` loads one."""

    def __init__(self, algo: str) -> None:
        self.algo = algo
        self.__name__ = algo.upper()

    def __call__(self, env: str = "CartPole-v1", *, policy: nn.Module | None = None, **config: Any) -> Agent:
        return Agent(TrainConfig(algo=self.algo, env=env, **config), policy)  # type: ignore[arg-type]

    def load(self, path: str | os.PathLike, policy: nn.Module | None = None) -> Agent:
        agent = Agent.load(path, policy)
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
