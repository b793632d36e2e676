"""One training run in a run directory, as ``trustpg train`` does it.

Order of events, so that bad input creates nothing and an interruption loses nothing:
1. check the target (a name file systems accept, a writable place, not a file, not someone
   else's directory) and build the agent (env, spaces, memory estimate) — nothing written yet;
2. take the directory's lock (a second process on the same run gets one line and exit 2);
3. under the lock, re-check what the directory holds (a run with a checkpoint is continued only
   with ``--resume``; a run that never wrote a checkpoint starts again, not a dead end);
4. write ``config.json`` atomically, train (SIGINT/SIGTERM: finish the update, checkpoint, exit 0),
   evaluate, write ``summary.json`` atomically.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from trustpg.app import interrupts
from trustpg.config.train_config import TrainConfig
from trustpg.errors import EnvFault, TrainingFault, UserError
from trustpg.io.checkpoint import load_checkpoint
from trustpg.io.rundir import (
    check_creatable,
    check_new_run,
    check_not_foreign,
    checkpoint_file,
    env_part,
    locked,
    read_json,
    write_json,
)

#: Fields that make a run what it is: resuming with another value would relabel the run or
#: load weights into a network of another shape, so ``--resume`` refuses to change them.
IDENTITY = (
    "algo", "env", "env_kwargs", "train_time_limit", "seed", "hidden_sizes", "vf_hidden_sizes",
    "activation", "num_envs", "normalize_obs", "normalize_reward", "vpg_optimizer", "action_dist",
    "policy", "normalize_images", "cnn_dense_sizes",
)  # fmt: skip


def _differences(a: dict[str, Any], b: dict[str, Any], fields: tuple[str, ...]) -> list[str]:
    """Fields that differ; a field missing from a config (saved before the field existed) has
    the value it had then: the default."""
    default = TrainConfig().to_dict()
    return [f for f in fields if a.get(f, default.get(f)) != b.get(f, default.get(f))]


def saved_config(run: Path) -> dict[str, Any]:
    """The config a run was made with: its checkpoint's (checksummed) if it has one, checked
    against ``config.json``; else ``config.json`` (a run that never checkpointed)."""
    check_creatable(run)
    ckpt = checkpoint_file(run)
    cfg_file = run / "config.json"
    if not ckpt.is_file():
        if not cfg_file.is_file():
            raise UserError(f"--resume {run}: not a run directory (no config.json, no checkpoint)")
        return read_json(cfg_file, " (the run has no checkpoint yet, so its config comes from this file)")
    _, meta = load_checkpoint(ckpt)
    cfg = meta.get("config")
    if not isinstance(cfg, dict):
        raise UserError(f"{ckpt}: checkpoint holds no config")
    if cfg_file.is_file():
        try:
            recorded = read_json(cfg_file)
        except UserError:
            recorded = None  # a damaged config.json: the checkpoint's config is rewritten to it
        differ = _differences(cfg, recorded or cfg, IDENTITY)
        if differ:
            raise UserError(
                f"{ckpt} belongs to another run: it was made with "
                + ", ".join(f"{f}={cfg.get(f)!r}" for f in differ)
                + f" but {cfg_file} records "
                + ", ".join(f"{f}={recorded.get(f)!r}" for f in differ)  # type: ignore[union-attr]
                + "; nothing was changed"
            )
    return cfg


def check_resume(run: Path, saved: dict[str, Any], config: TrainConfig) -> dict[str, Any]:
    """Fields the command line changes relative to the saved run; UserError for identity fields."""
    wanted = config.to_dict()
    differ = _differences(saved, wanted, IDENTITY)
    if differ:
        raise UserError(
            f"--resume {run}: the run was made with "
            + ", ".join(f"{f}={saved.get(f)!r}" for f in differ)
            + "; asking for "
            + ", ".join(f"{f}={wanted[f]!r}" for f in differ)
            + " would make it another run (start a new one with --run-name instead)"
        )
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(TrainConfig)
            if wanted[f.name] != saved.get(f.name)}  # fmt: skip


def run_name(config: TrainConfig) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return config.run_name or f"{env_part(config.env)}__{config.algo}__s{config.seed}__{stamp}"


def train_in_dir(config: TrainConfig, resume: Path | None) -> int:
    """``trustpg train``: returns the exit status (0 also when stopped by SIGINT/SIGTERM)."""
    from trustpg.train.agent import Agent

    run = resume if resume is not None else config.run_dir / run_name(config)
    check_creatable(run)
    if config.vectorization == "envpool":  # fail before the run directory is made
        from trustpg.envs.envpool_backend import check_envpool_env

        check_envpool_env(config.env)
    if resume is None:
        check_not_foreign(run)  # before the lock file is written into it
    if config.workers and config.ray_address:  # a cluster that does not answer: before any file
        from trustpg.sampling.ray_connect import check_ray_address

        check_ray_address(config.ray_address)
    agent = None if resume is not None else Agent(config)  # validates env and sizes, writes nothing
    if resume is None:
        interrupts.release()  # a Ctrl-C while starting stops here, before the lock file is written
    with locked(run):
        if resume is not None:
            changed = check_resume(run, saved_config(run), config)
            found = checkpoint_file(run).is_file()
            agent = Agent.load(checkpoint_file(run), **changed) if found else Agent(config)
        elif check_new_run(run):
            print(f"{run} holds a run that never wrote a checkpoint: starting it again")
        assert agent is not None
        try:
            if resume is not None:
                # Resuming, the envs were built (and MuJoCo's import started its child process)
                # just now: a Ctrl-C is held until here, where only the existing run directory's
                # lock has been taken and nothing written.
                interrupts.release()
                if found:
                    print(f"resuming {run} at {agent.num_timesteps} steps; "
                          f"{max(config.steps - agent.num_timesteps, 0)} to go")  # fmt: skip
                else:
                    print(f"{run} has no checkpoint yet: starting it from the beginning")
                for name in changed:
                    print(f"  {name}: {changed[name]!r} (changed on resume, recorded in config.json)")
            return _train(agent, run)
        finally:
            agent.close()


def _train(agent: Any, run: Path) -> int:
    config = agent.config
    t0 = time.perf_counter()
    try:
        agent.learn(max(config.steps - agent.num_timesteps, 0), run_dir=run)
    except (EnvFault, TrainingFault) as e:
        last = checkpoint_file(run)
        if last.exists():
            e.args = (f"{e} Last checkpoint: {last} (continue with: trustpg train --resume {run})",)
        raise
    seconds = time.perf_counter() - t0
    if agent.interrupted:
        print(f"interrupted at {agent.num_timesteps} steps; checkpoint saved. "
              f"Continue with: trustpg train --resume {run}")  # fmt: skip
        return 0
    summary = read_json(run / "summary.json")  # written by Agent.learn; the evaluation is added
    if config.eval_episodes:
        try:
            mean, std, returns = agent.evaluate(config.eval_episodes)
        except KeyboardInterrupt:
            print(f"final evaluation interrupted; the trained run is saved in {run} "
                  f"(evaluate it with: trustpg eval {run})")  # fmt: skip
            summary["eval_interrupted"] = True
        else:
            summary.update(eval_mean=mean, eval_std=std, eval_returns=returns)
            print(f"evaluation over {config.eval_episodes} episodes: {mean:.1f} ± {std:.1f}")
    write_json(run / "summary.json", summary)
    print(f"run saved in {run}  ({agent.num_timesteps} steps, {seconds:.1f} s)")
    return 0
