"""``trustpg compare``: train several algorithms × seeds on one env, then plot and tabulate them.

Runs go to ``OUT/<env>__<algo>__s<seed>`` one after another (the machine's cores go to each run's
envs, not to parallel runs). A finished run (with ``summary.json``) is reused, an interrupted one
resumed, so rerunning the same command completes a comparison instead of starting it again.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from trustpg.logger import read_metrics

ALGOS = ("vpg", "npg", "trpo")
#: Options compare sets itself for every run; passing them through would break the layout.
RESERVED = ("--algo", "--seed", "--run-dir", "--run-name", "--resume", "--config", "--env")


def run_name(env: str, algo: str, seed: int) -> str:
    return f"{env}__{algo}__s{seed}"


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(
        prog="trustpg compare",
        allow_abbrev=False,  # --seed must not silently mean --seeds
        description="Train each algorithm with each seed on one env, then plot mean ± std "
        "across seeds and print a table of final returns.",
        epilog="Any other option is passed to every `trustpg train` run, e.g. --preset classic, "
        "--num-envs 4, --max-kl 0.02, --eval-episodes 5.",
    )
    p.add_argument("--algos", default=",".join(ALGOS), help="comma-separated: vpg,npg,trpo")
    p.add_argument("--env", default="CartPole-v1", help="Gymnasium environment id")
    p.add_argument("--seeds", type=int, default=3, help="number of seeds: 0, 1, ..., N-1")
    p.add_argument("--steps", type=int, default=None, help="env steps per run (default: train's)")
    p.add_argument("--out", type=Path, default=None, help="directory for runs and figures "
                   "(default runs/compare__<env>)")  # fmt: skip
    p.add_argument("--x", default="env_steps", help="x axis: env_steps or wall_time")
    p.add_argument("--y", default="mean_return", help="any metrics.csv column")
    args, rest = p.parse_known_args(argv)
    algos = [a.strip().lower() for a in args.algos.split(",") if a.strip()]
    bad = [a for a in algos if a not in ALGOS]
    if not algos or bad:
        raise ValueError(f"--algos {args.algos!r} is invalid: must be a comma-separated subset of "
                         f"{','.join(ALGOS)}")  # fmt: skip
    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    clash = [a for a in rest if a.split("=", 1)[0] in RESERVED]
    if clash:
        raise ValueError(f"trustpg compare sets {', '.join(clash)} itself; remove it")
    args.algos = algos
    if args.out is None:
        args.out = Path("runs") / f"compare__{args.env}"
    return args, rest


def compare_main(argv: list[str]) -> int:
    """Entry point of ``trustpg compare``; returns the exit status of the first failing run or 0."""
    from trustpg.cli import cmd_train
    from trustpg.plotting import plot_runs

    args, rest = parse_args(argv)
    runs = []
    for algo in args.algos:
        for seed in range(args.seeds):
            run = args.out / run_name(args.env, algo, seed)
            runs.append(run)
            if (run / "summary.json").is_file():
                print(f"{run.name}: done, reused")
                continue
            if (run / "checkpoints" / "last.safetensors").is_file():
                train_argv = ["--resume", str(run)]
            else:
                train_argv = [*rest, "--algo", algo, "--env", args.env, "--seed", str(seed),
                              "--run-dir", str(args.out), "--run-name", run.name]  # fmt: skip
            if args.steps is not None:
                train_argv += ["--steps", str(args.steps)]
            print(f"{run.name}: training")
            status = cmd_train(train_argv)
            if status != 0:
                return status
    figure = plot_runs(runs, args.out / "curves.png", x=args.x, y=args.y)
    table = summary_table(runs)
    (args.out / "summary.md").write_text(table)
    print(table, end="")
    print(f"wrote {figure} and {args.out / 'summary.md'}")
    return 0


def final_return(run: Path) -> float:
    """The run's final evaluation mean (summary.json), else its last logged mean_return."""
    summary = run / "summary.json"
    if summary.is_file():
        value = json.loads(summary.read_text()).get("eval_mean")
        if value is not None:
            return float(value)
    rows = [r for r in read_metrics(run / "metrics.csv") if not math.isnan(float(r["mean_return"]))]
    return float(rows[-1]["mean_return"]) if rows else math.nan


def summary_table(runs: list[Path]) -> str:
    """Markdown table: per (env, algo), final return mean ± std across seeds and env steps."""
    groups: dict[tuple[str, str], list[Path]] = {}
    for run in runs:
        cfg = json.loads((run / "config.json").read_text())
        groups.setdefault((cfg["env"], cfg["algo"]), []).append(run)
    lines = ["| env | algo | seeds | final return (mean ± std) | env steps |", "|---|---|---|---|---|"]
    for (env, algo), members in groups.items():
        finals = np.array([final_return(r) for r in members])
        steps = max(int(float(read_metrics(r / "metrics.csv")[-1]["env_steps"])) for r in members)
        lines.append(f"| {env} | {algo.upper()} | {len(members)} | "
                     f"{finals.mean():.1f} ± {finals.std():.1f} | {steps} |")  # fmt: skip
    return "\n".join(lines) + "\n"
