"""``trustpg compare``: train several algorithms × seeds on one env, then plot and tabulate them.

Runs go to ``OUT/<env>__<algo>__s<seed>`` one after another (the machine's cores go to each run's
envs, not to parallel runs). Rerunning the same command completes a comparison instead of starting
it again: a finished run (with ``summary.json``) is reused and an interrupted one resumed, but only
if its config.json matches the config this compare would train it with in every field that changes
results (:func:`trustpg.io.plotting.result_fields`: not paths, display or speed-only settings);
otherwise compare refuses in one line (exit 2) and touches nothing.

Ctrl-C stops the whole comparison: the current run checkpoints (as ``trustpg train`` does), no later
run starts, and compare lists the incomplete runs, writes ``summary.md`` with them marked and exits
with status 130 (128 + SIGINT, so ``compare && next`` does not go on with a partial comparison).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import shlex
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trustpg.app.compare_args import INTERRUPTED, run_name
from trustpg.config.train_config import TrainConfig
from trustpg.io.logger import metrics_file, read_metrics
from trustpg.io.plotting import fmt_value, group_configs, load_config, result_fields
from trustpg.io.rundir import write_atomic


@dataclass
class Planned:
    """One run of the comparison: its directory, its train flags and the config they resolve to."""

    run: Path
    argv: list[str]
    config: dict[str, Any]
    train_config: TrainConfig


def plan(args: argparse.Namespace, rest: list[str]) -> list[Planned]:
    """Every run, with the config ``trustpg train`` resolves from its flags (presets, defaults)."""
    from trustpg.app.train_args import parse_train_args

    out = []
    for algo in args.algos:
        for seed in range(args.seeds):
            run = args.out / run_name(args.env, algo, seed)
            argv = [*rest, "--algo", algo, "--env", args.env, "--seed", str(seed)]
            if args.steps is not None:
                argv += ["--steps", str(args.steps)]
            config, _ = parse_train_args([*argv, "--run-dir", str(args.out), "--run-name", run.name])
            out.append(Planned(run, argv, config.to_dict(), config))
    return out


def check_reusable(p: Planned) -> None:
    """ValueError (one line) if ``p.run`` exists and was made with other result-changing fields."""
    if not (p.run / "config.json").is_file():
        return
    saved = load_config(p.run)
    a, b = result_fields(saved), result_fields(p.config)
    differ = [k for k in dict.fromkeys([*b, *a]) if a.get(k) != b.get(k)]
    if differ:
        was = ", ".join(f"{k}={fmt_value(saved.get(k))}" for k in differ)
        asks = ", ".join(f"{k}={fmt_value(p.config.get(k))}" for k in differ)
        raise ValueError(f"{p.run} was made with {was}, this compare asks {asks}; "
                         f"use another --out or delete it")  # fmt: skip


def finished(run: Path) -> bool:
    """Trained and evaluated: summary.json is written last, and says so if Ctrl-C cut the final
    evaluation short (such a run resumes at its last step and is evaluated again)."""
    path = run / "summary.json"
    if not path.is_file():
        return False
    try:
        return not json.loads(path.read_text()).get("eval_interrupted", False)
    except (json.JSONDecodeError, AttributeError):
        return False


def train_one(p: Planned) -> int:
    """Train (or continue) one run through the same orchestrator as ``trustpg train``."""
    from trustpg.app.run import train_in_dir

    if finished(p.run):
        print(f"{p.run.name}: done, reused")
        return 0
    # check_reusable made sure a run already there has the same result-changing fields
    resume = p.run if (p.run / "checkpoints" / "last.safetensors").is_file() else None
    print(f"{p.run.name}: training")
    return train_in_dir(p.train_config, resume)


def compare_main(argv: list[str], args: argparse.Namespace, rest: list[str]) -> int:
    """``trustpg compare`` after its arguments were parsed (``compare_args.parse_args(argv)``, before
    this module's imports): 0 when every run finished, 130 on Ctrl-C, else the status of the first
    failing run."""
    from trustpg.io.plotting import plot_runs

    runs: list[Planned] = []
    try:
        runs = plan(args, rest)
        for p in runs:
            check_reusable(p)  # all of them before anything is trained or written
        for p in runs:
            status = train_one(p)
            if status != 0:
                return status
            if not finished(p.run):  # cmd_train returned after SIGINT/SIGTERM: stop here
                return report_interrupted(args, argv, runs)
        figure = plot_runs([p.run for p in runs], args.out / "curves.png", x=args.x, y=args.y)
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside the training loop
        return report_interrupted(args, argv, runs)
    table = summary_table({p.run: p.config for p in runs})
    write_atomic(args.out / "summary.md", table)
    print(table, end="")
    print(f"wrote {figure} and {args.out / 'summary.md'}")
    return 0


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Another Ctrl-C while the report is written must not leave half of it (or a traceback)."""
    try:
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def report_interrupted(args: argparse.Namespace, argv: list[str], runs: list[Planned]) -> int:
    with _sigint_ignored():
        again = "trustpg compare " + shlex.join(argv)
        if not runs:
            print(f"compare interrupted before any run started. Rerun to start: {again}")
            return INTERRUPTED
        done = sum(finished(p.run) for p in runs)
        print(f"compare interrupted: {done} of {len(runs)} runs finished; curves.png not drawn")
        for p in runs:
            if not finished(p.run):
                print(f"  {p.run.name}: {_state(p)}")
        table = summary_table({p.run: p.config for p in runs})
        write_atomic(args.out / "summary.md", table)
        print(table, end="")
        print(f"wrote {args.out / 'summary.md'} (incomplete). Continue with the same command, which "
              f"reuses finished runs and resumes the incomplete one: {again}")  # fmt: skip
    return INTERRUPTED


def _state(p: Planned) -> str:
    steps = last_steps(p.run)
    if steps is None:
        return "not started"
    if (p.run / "checkpoints" / "last.safetensors").is_file():
        return f"incomplete ({steps} of {p.config['steps']} steps, checkpoint saved)"
    return f"incomplete ({steps} of {p.config['steps']} steps, no checkpoint: restarts)"


def last_steps(run: Path) -> int | None:
    path = metrics_file(run)
    if path is None:
        return None
    rows = read_metrics(path)
    return int(float(rows[-1]["env_steps"])) if rows else 0


def final_return(run: Path) -> float:
    """The run's final evaluation mean (summary.json), else its last logged mean_return."""
    summary = run / "summary.json"
    if summary.is_file():
        value = json.loads(summary.read_text()).get("eval_mean")
        if value is not None:
            return float(value)
    rows = [r for r in read_metrics(run / "metrics.csv") if not math.isnan(float(r["mean_return"]))]
    return float(rows[-1]["mean_return"]) if rows else math.nan


def summary_table(configs: dict[Path, dict[str, Any]]) -> str:
    """Markdown table, one row per group of runs (as ``plot``'s lines): the final return's mean ±
    std across the group's finished runs and their env steps. A group with runs that did not
    finish says ``incomplete: k of n finished`` in its seeds column, its numbers cover finished
    runs only."""
    lines = ["| env | algo | seeds | final return (mean ± std) | env steps |", "|---|---|---|---|---|"]
    for group, members in group_configs(configs).items():
        done = [r for r in members if finished(r)]
        seeds = str(len(members)) if len(done) == len(members) else (
            f"incomplete: {len(done)} of {len(members)} finished")  # fmt: skip
        if done:
            finals = np.array([final_return(r) for r in done])
            value = f"{finals.mean():.1f} ± {finals.std():.1f}"
            steps = str(max(last_steps(r) or 0 for r in done))
        else:
            value = steps = "—"
        lines.append(f"| {group.env} | {group.label} | {seeds} | {value} | {steps} |")
    return "\n".join(lines) + "\n"
