"""How often a trained policy falls from an episode's start: the final checkpoints of runs, each
evaluated as the run's own evaluation does (deterministic, seeds seed+10000+k, the env's default
settings and time limit) and over many other starting states (seeds 50000+k), counting the starts
from which it terminates within ``--steps`` steps.

Why (docs/benchmarks.md, InvertedDoublePendulum-v5): a ten-episode evaluation sees ten starts; a
policy that falls from one start in ten or in thirty can score 9,357 on all ten or lose one
episode, so the evaluation alone cannot say how robust a policy is, nor what a change did to it.

    python benchmarks/start_falls.py RUN_DIR [RUN_DIR ...] [--starts 300] [--steps 200] [--below X]

A policy can also fail from a start without terminating: on Ant-v5 the deterministic policy can
come to rest in its first steps and stand still for the whole episode (its training, with
exploration noise, is kicked out of that state). ``--below X`` plays each other start to the env's
time limit and counts also the starts whose return is below X ("stalls" when they did not fall).

A run directory needs ``checkpoints/last.safetensors`` (kept by the run, not committed to git).
The env is made with the run's ``env_kwargs`` except ``max_episode_steps`` (the env's own limit),
and without ``train_time_limit`` (training only); ``--defaults`` ignores the run's ``env_kwargs``
(for a run trained on a changed env, such as a wider ``reset_noise_scale``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from trustpg.train.agent import Agent


def env_for(run: Path, defaults: bool = False, overrides: dict[str, Any] | None = None) -> gym.Env:
    """The run's env (its ``env_kwargs``, or none with ``defaults``; ``overrides`` on top) at the
    env's own time limit."""
    config = json.loads((run / "config.json").read_text())
    kwargs = {} if defaults else json.loads(config.get("env_kwargs") or "{}")
    kwargs = {**kwargs, **(overrides or {})}
    kwargs.pop("max_episode_steps", None)
    return gym.make(config["env"], **kwargs)


def transitions(agent: Agent, env: gym.Env, seed: int) -> Iterator[tuple[float, bool, dict[str, Any]]]:
    """(reward, terminated, info) of each step of one deterministic episode from
    ``env.reset(seed=seed)``, to its end (terminated or truncated at the env's time limit)."""
    obs, _ = env.reset(seed=seed)
    while True:
        obs, r, terminated, truncated, info = env.step(agent.predict(obs))
        yield float(r), bool(terminated), info
        if terminated or truncated:
            return


def play(agent: Agent, env: gym.Env, seed: int, steps: int | None = None) -> tuple[float, int | None]:
    """(return, the step it terminated at or None) of one deterministic episode from
    ``env.reset(seed=seed)``, cut after ``steps`` steps if given (else at the env's time limit)."""
    total = 0.0
    for t, (r, terminated, _) in enumerate(transitions(agent, env, seed), start=1):
        total += r
        if terminated:
            return total, t
        if steps is not None and t >= steps:
            break
    return total, None


def episode(agent: Agent, env: gym.Env, seed: int, steps: int | None = None) -> tuple[float, bool]:
    """(return, terminated) of :func:`play`'s episode."""
    total, end = play(agent, env, seed, steps)
    return total, end is not None


def falls(agent: Agent, env: gym.Env, starts: int, steps: int, first_seed: int = 50_000) -> list[bool]:
    """For each start (seeds first_seed..first_seed+starts-1): did the policy terminate within
    ``steps`` steps?"""
    return [episode(agent, env, first_seed + k, steps)[1] for k in range(starts)]


def falls_and_stalls(
    agent: Agent, env: gym.Env, starts: int, steps: int, below: float, first_seed: int = 50_000
) -> tuple[list[bool], list[bool]]:
    """Each start played to the time limit: (terminated within ``steps`` steps; did not, and
    returned less than ``below``) per start. The first list is :func:`falls`'s."""
    fell, stalled = [], []
    for k in range(starts):
        total, end = play(agent, env, first_seed + k)
        fell.append(end is not None and end <= steps)
        stalled.append(not fell[-1] and total < below)
    return fell, stalled


def upper_pole_tilt(env: gym.Env, starts: int, first_seed: int = 50_000) -> np.ndarray:
    """InvertedDoublePendulum: the upper pole's angle from vertical at each start, |θ1 + θ2|."""
    out = []
    for k in range(starts):
        env.reset(seed=first_seed + k)
        qpos = env.unwrapped.data.qpos  # type: ignore[attr-defined]
        out.append(abs(float(qpos[1] + qpos[2])))
    return np.array(out)


def by_tilt(fell: np.ndarray, tilt: np.ndarray) -> list[str]:
    """Fall rate over all runs (rows of ``fell``) by the starts' upper-pole tilt."""
    lines = ["| upper pole's starting tilt (rad) | starts | fall rate over the runs |", "|---|---|---|"]
    for lo, hi in [(0.0, 0.05), (0.05, 0.1), (0.1, 0.15), (0.15, 0.25)]:
        m = (tilt >= lo) & (tilt < hi)
        lines.append(f"| [{lo}, {hi}) | {int(m.sum())} | {fell[:, m].mean():.3f} |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--starts", type=int, default=300)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--below", type=float, help="also count the starts returning less than this")
    p.add_argument("--defaults", action="store_true", help="the env defaults, not the run's env_kwargs")
    p.add_argument("--tilt", action="store_true", help="InvertedDoublePendulum: fall rate by starting tilt")
    p.add_argument("--out", type=Path, help="also write a JSON record there (the table, provenance)")
    args = p.parse_args()
    n_starts = args.starts
    stall_col = "" if args.below is None else f" not fallen, returned < {args.below:g} |"
    lines = [
        f"| run | evaluation (10 episodes) | fell in evaluation | falls from {n_starts} other starts |"
        + stall_col,
        "|---|---|---|---|" + ("---|" if stall_col else ""),
    ]
    print(*lines, sep="\n")
    fell_all, stalled_all = [], []
    for run in args.runs:
        agent = Agent.load(run / "checkpoints" / "last.safetensors", critic_process=False)
        env = env_for(run, args.defaults)
        evaluation = [episode(agent, env, agent.config.seed + 10_000 + k) for k in range(10)]
        returns = [r for r, _ in evaluation]
        mean, std, low = float(np.mean(returns)), float(np.std(returns)), sum(t for _, t in evaluation)
        if args.below is None:
            fell, stalled = falls(agent, env, n_starts, args.steps), []
        else:
            fell, stalled = falls_and_stalls(agent, env, n_starts, args.steps, args.below)
        fell_all.append(fell)
        stalled_all.append(stalled)
        name = str(run).split("bench-runs/")[-1]
        row = f"| {name} | {mean:,.1f} ± {std:,.1f} | {low} of 10 | {_share(fell)} |"
        lines.append(row + (f" {_share(stalled)} |" if stall_col else ""))
        print(lines[-1], flush=True)
        if run == args.runs[-1] and args.tilt:
            lines += ["", *by_tilt(np.array(fell_all), upper_pole_tilt(env, n_starts))]
            print(*lines[-6:], sep="\n")
        env.close()
        agent.close()
    if args.out:
        from trustpg.io.manifest import provenance

        record = {
            "provenance": provenance(), "starts": n_starts, "steps": args.steps, "below": args.below,
            "defaults": args.defaults, "first_seed": 50_000, "table": lines,
            "runs": [{"run": str(run).split("bench-runs/")[-1], "falls": int(sum(f)),
                      **({"stalls": int(sum(st))} if stall_col else {})}
                     for run, f, st in zip(args.runs, fell_all, stalled_all, strict=True)],
        }  # fmt: skip
        args.out.write_text(json.dumps(record, indent=1) + "\n")


def _share(flags: list[bool]) -> str:
    return f"{sum(flags)} ({100 * sum(flags) / len(flags):.1f} %)"


if __name__ == "__main__":
    main()
