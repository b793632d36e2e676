"""``trustpg`` command line: train, tune, eval, plot, compare, experiment.

``train`` is generated from :class:`trustpg.config.train_config.TrainConfig` by tyro, so
``trustpg train --help`` documents every hyperparameter. Errors in user input print one line and
exit with status 2 (every command's parser is a :class:`~trustpg.app.guard.OneLineParser`). Heavy
modules (torch, gymnasium, matplotlib) are imported inside the commands, after their arguments are
parsed, so ``--help``, ``--version`` and a bad option answer without them (tests/integration/
test_fast_start.py checks ``sys.modules``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from trustpg.app import interrupts
from trustpg.app.guard import OneLineParser, fail, guarded
from trustpg.app.train_args import cmd_train, import_env_modules
from trustpg.config.train_config import MAX_SEED
from trustpg.errors import UserError

USAGE = """usage: trustpg {train,tune,eval,plot,compare,experiment} ... | --version

  train       train an agent (trustpg train --help lists every hyperparameter;
              --seeds 0 1 2 trains several seeds in parallel)
  tune        search hyperparameters with Optuna (pip install 'trustpg[tune]')
  eval        evaluate a run directory or checkpoint (--video out.mp4 records an episode)
  plot        learning curves from run directories
  compare     train several algorithms × seeds on one env, then plot them
  experiment  the seed's experiments (bernoulli, invariance, angle, ...)
"""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from trustpg import __version__

        print(f"trustpg {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    commands = {
        "train": cmd_train,
        "tune": cmd_tune,
        "eval": cmd_eval,
        "plot": cmd_plot,
        "compare": cmd_compare,
        "experiment": cmd_experiment,
    }
    if command not in commands:
        return fail(f"unknown command {command!r}; choose from {', '.join(commands)}")
    return guarded(lambda: _ready_after(commands[command](rest)))


def _ready_after(status: int) -> int:
    """A command releases a held Ctrl-C once it is ready (:mod:`trustpg.app.interrupts`); one that
    ended before that point still reports a Ctrl-C it was given (exit 130)."""
    interrupts.release()
    return status


def _checkpoint_for(target: Path, which: str) -> Path:
    if target.is_dir():
        path = target / "checkpoints" / f"{which}.safetensors"
        if not path.exists():
            raise UserError(f"{target}: no {which} checkpoint (looked for {path})")
        return path
    return target


def _check_video_target(out: Path) -> None:
    """Before any work: a .mp4 path whose directory exists or can be made, and is writable."""
    if out.suffix != ".mp4":
        raise UserError(f"--video {out}: the file must end in .mp4")
    if out.is_dir():
        raise UserError(f"--video {out}: is a directory; give a file name ending in .mp4")
    base = out.absolute().parent
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir() or not os.access(base, os.W_OK | os.X_OK):
        raise UserError(f"--video {out}: cannot write there ({base} is not a writable directory)")


def cmd_eval(argv: list[str]) -> int:
    p = OneLineParser(prog="trustpg eval", description="Evaluate a trained agent.")
    p.add_argument("run", type=Path, help="run directory or .safetensors checkpoint")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--checkpoint", choices=["last", "best"], default="last")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--deterministic", dest="deterministic", action="store_true", default=True)
    mode.add_argument("--stochastic", dest="deterministic", action="store_false")
    p.add_argument("--seed", type=int, default=None, help="first episode's env seed")
    p.add_argument("--video", type=Path, default=None,
                   help="record the first episode to this .mp4 (pip install 'trustpg[video]')")  # fmt: skip
    p.add_argument("--env-module", action="append", default=[], help="import PKG to register its envs")
    p.add_argument("--max-episode-steps", type=int, default=None,
                   help="cut each episode after this many steps (default: the env's time limit, or "
                   "100000 with a warning for an env without one)")  # fmt: skip
    args = p.parse_args(argv)
    if args.max_episode_steps is not None and args.max_episode_steps < 1:
        raise UserError(f"--max-episode-steps must be >= 1, got {args.max_episode_steps}")
    if args.episodes < 1:
        raise UserError(f"--episodes must be >= 1, got {args.episodes}")
    if args.seed is not None and not 0 <= args.seed < MAX_SEED - args.episodes:
        raise UserError(f"--seed {args.seed} is invalid: must be in [0, {MAX_SEED - args.episodes - 1}] "
                        "(episode k uses seed + k; Gymnasium seeds are non-negative)")  # fmt: skip
    if args.video is not None:
        _check_video_target(args.video)
    from trustpg.train.agent import FOR_EVALUATION, Agent

    import_env_modules(args.env_module)
    if args.video is not None and not os.environ.get("DISPLAY"):
        os.environ.setdefault("MUJOCO_GL", "egl")  # headless MuJoCo rendering
    agent = Agent.load(_checkpoint_for(args.run, args.checkpoint), **FOR_EVALUATION)
    interrupts.release()
    mean, std, _ = agent.evaluate(args.episodes, args.deterministic, args.seed, video=args.video,
                                  max_episode_steps=args.max_episode_steps)  # fmt: skip
    if args.video is not None:
        print(f"wrote {args.video}")
    kind = "deterministic" if args.deterministic else "stochastic"
    print(f"{agent.config.env} {agent.config.algo.upper()} ({kind}, {args.episodes} episodes): "
          f"{mean:.2f} ± {std:.2f}")  # fmt: skip
    return 0


def cmd_plot(argv: list[str]) -> int:
    interrupts.release()
    p = OneLineParser(prog="trustpg plot", description="Plot learning curves.")
    p.add_argument("runs", type=Path, nargs="+", help="run directories (holding metrics.csv)")
    p.add_argument("--out", type=Path, default=Path("curves.png"))
    p.add_argument("--x", default="env_steps", help="x column: env_steps or wall_time")
    p.add_argument("--y", default="mean_return", help="any metrics.csv column")
    args = p.parse_args(argv)
    from trustpg.io.plotting import plot_runs

    out = plot_runs(args.runs, args.out, x=args.x, y=args.y)
    print(f"wrote {out}")
    return 0


def cmd_compare(argv: list[str]) -> int:
    from trustpg.app.compare_args import parse_args

    interrupts.release()
    args, rest = parse_args(argv)
    from trustpg.app.compare import compare_main

    return compare_main(argv, args, rest)


def cmd_tune(argv: list[str]) -> int:
    from trustpg.app.tune import tune_main

    interrupts.release()

    return tune_main(argv)


def cmd_experiment(argv: list[str]) -> int:
    from trustpg.experiments import run_experiment

    interrupts.release()

    return run_experiment(argv, OneLineParser)
