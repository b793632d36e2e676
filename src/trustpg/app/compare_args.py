"""``trustpg compare``'s options, parsed before anything heavy is imported (``compare --help`` and
a bad option answer at once; :mod:`trustpg.app.compare` does the work)."""

from __future__ import annotations

import argparse
from pathlib import Path

from trustpg.app.guard import OneLineParser
from trustpg.io.rundir import env_part

ALGOS = ("vpg", "npg", "trpo")
#: Options compare sets itself for every run; passing them through would break the layout.
RESERVED = ("--algo", "--seed", "--run-dir", "--run-name", "--resume", "--config", "--env")
INTERRUPTED = 130


def run_name(env: str, algo: str, seed: int) -> str:
    return f"{env_part(env)}__{algo}__s{seed}"


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    p = OneLineParser(
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
        args.out = Path("runs") / f"compare__{env_part(args.env)}"
    return args, rest
