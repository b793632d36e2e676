"""One ``trustpg tune`` trial: sample a config, train it in its run directory, evaluate it."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trustpg.app.tune_space import Param, suggest
from trustpg.config.train_config import TrainConfig
from trustpg.errors import EnvFault, MissingExtra, TrainingFault


@dataclass(frozen=True)
class Tune:
    """Everything a tune process needs (picklable: ``--jobs`` sends it to worker processes)."""

    base: TrainConfig
    space: dict[str, Param]
    out: Path
    storage: str
    study_name: str
    trials: int
    evals: int
    prune: bool
    jobs: int
    workers: int = 0  # Ray tasks instead of --jobs processes (trustpg.app.tune_ray)
    ray_address: str | None = None


class BadTrial(Exception):
    """The sampled values do not make a valid config together (the trial fails, the tune goes on)."""


def optuna_module() -> Any:
    try:
        import optuna
    except ImportError:
        raise MissingExtra("trustpg tune needs Optuna: pip install 'trustpg[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # trustpg prints a line per trial itself
    return optuna


def run_dir(t: Tune, number: int) -> Path:
    return t.out / f"trial_{number:04d}"


class _Report:
    """Agent.learn callback: each periodic evaluation goes to Optuna; False (stop) when pruned."""

    def __init__(self, trial: Any, last_from: int) -> None:
        self.trial = trial
        self.last_from = last_from  # from here on at most one update is left
        self.pruned_at: int | None = None

    def __call__(self, row: Any) -> bool | None:
        value = float(row["eval_return"])
        if math.isnan(value):
            return None
        self.trial.report(value, int(row["env_steps"]))
        # with at most one update left, pruning saves nothing: let the trial finish and be scored
        if int(row["env_steps"]) < self.last_from and self.trial.should_prune():
            self.pruned_at = int(row["env_steps"])
            return False
        return None


def objective(t: Tune, trial: Any) -> float:
    """The trial's final evaluation; nan (failed) if training failed or was interrupted. A trial cut
    short by Ctrl-C is marked ``interrupted``: not counted, and tried again on the next run."""
    try:
        return _trial(t, trial)
    except KeyboardInterrupt:  # outside the training loop (which stops cleanly), or a second one
        trial.set_user_attr("interrupted", True)
        raise


def _trial(t: Tune, trial: Any) -> float:
    from trustpg.io.rundir import read_json, write_json
    from trustpg.train.agent import Agent

    run = run_dir(t, trial.number)
    trial.set_user_attr("run_dir", str(run))
    try:
        config = t.base.replace(**suggest(trial, t.space), run_name=run.name)
    except (TypeError, ValueError) as e:
        raise BadTrial(str(e)) from None
    updates = math.ceil(config.steps / config.batch_size)
    config = config.replace(eval_every=max(1, updates // t.evals))
    t0 = time.perf_counter()
    agent = Agent(config)
    try:
        report = _Report(trial, last_from=config.steps - config.batch_size)
        agent.learn(config.steps, report, run_dir=run)
        if agent.interrupted:  # Ctrl-C: checkpointed; stop the study, try the trial again later
            print(f"trial {trial.number}: interrupted at {agent.num_timesteps} steps  {run}")
            trial.set_user_attr("interrupted", True)
            trial.study.stop()
            return math.nan  # recorded as failed (not counted: the trial is queued again)
        trial.set_user_attr("env_steps", agent.num_timesteps)
        if report.pruned_at is not None:
            print(f"trial {trial.number}: pruned at {report.pruned_at} steps  {run}")
            raise optuna_module().TrialPruned()
        mean, std, returns = agent.evaluate(config.eval_episodes)
    except (TrainingFault, EnvFault) as e:  # hyperparameters that break training: the tune goes on
        print(f"trial {trial.number}: failed: {e}  {run}")
        trial.set_user_attr("error", str(e))
        return math.nan  # Optuna records the trial as failed
    finally:
        agent.close()
    summary = read_json(run / "summary.json")
    write_json(run / "summary.json", {**summary, "eval_mean": mean, "eval_std": std, "eval_returns": returns})
    print(f"trial {trial.number}: {mean:.1f} ± {std:.1f}  ({agent.num_timesteps} steps, "
          f"{time.perf_counter() - t0:.0f} s)  {run}")  # fmt: skip
    return mean
