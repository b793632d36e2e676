"""``trustpg`` command line: train, eval, plot, experiment.

``train`` is generated from :class:`trustpg.config.TrainConfig` by tyro, so ``trustpg train --help``
documents every hyperparameter. Errors in user input print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import tyro

from trustpg.checkpoint import CheckpointError
from trustpg.config import MAX_SEED, TrainConfig, deferred_validation, validate
from trustpg.distributed import MissingExtra
from trustpg.errors import UserError
from trustpg.presets import preset_overrides
from trustpg.rollout import EnvFault
from trustpg.trainer import TrainingFault

USAGE = """usage: trustpg {train,eval,plot,compare,experiment} ...

  train       train an agent (trustpg train --help lists every hyperparameter)
  eval        evaluate a run directory or checkpoint (--video out.mp4 records an episode)
  plot        learning curves from run directories
  compare     train several algorithms × seeds on one env, then plot them
  experiment  the seed's experiments (bernoulli, invariance, angle, ...)
"""


def _fail(msg: str) -> int:
    print(f"trustpg: error: {msg}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    commands = {
        "train": cmd_train,
        "eval": cmd_eval,
        "plot": cmd_plot,
        "compare": cmd_compare,
        "experiment": cmd_experiment,
    }
    if command not in commands:
        return _fail(f"unknown command {command!r}; choose from {', '.join(commands)}")
    try:
        return commands[command](rest)
    except (UserError, ValueError, TypeError, CheckpointError, MissingExtra) as e:
        return _fail(str(e))
    except gym.error.DependencyNotInstalled as e:  # e.g. a Box2D env without box2d
        return _fail(f"the environment needs a package that is not installed: {e}")
    except (EnvFault, TrainingFault) as e:
        print(f"trustpg: stopped: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # before training started, or a second Ctrl-C during it
        print("trustpg: interrupted; every checkpoint written so far is intact", file=sys.stderr)
        return 130
    except OSError as e:  # disk full, read-only file system, ...: the file and the reason
        where = f"{e.filename}: " if e.filename else ""
        print(f"trustpg: error: cannot write or read {where}{e.strerror or e}; every checkpoint "
              "written before this is intact", file=sys.stderr)  # fmt: skip
        return 1


#: A config file holds a few dozen fields; anything far larger is a wrong path, not a config.
MAX_CONFIG_BYTES = 1 << 20


def _load_config_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"--config {path}: no such file")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise UserError(f"--config {path}: {path.stat().st_size} bytes; a config file is at most "
                        f"{MAX_CONFIG_BYTES} (is this the right file?)")  # fmt: skip
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"--config {path}: cannot read it as text: {e}") from None
    if path.suffix == ".toml":
        import tomllib

        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise UserError(f"--config {path}: invalid TOML: {e}") from None
        except RecursionError:
            raise UserError(f"--config {path}: nested too deeply to be a config") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise UserError(f"--config {path}: invalid JSON: {e}") from None
        except RecursionError:
            raise UserError(f"--config {path}: nested too deeply to be a config") from None
    if not isinstance(data, dict):
        raise UserError(f"--config {path}: expected a table/object of config fields")
    return data


def parse_train_args(argv: list[str]) -> tuple[TrainConfig, Path | None]:
    """Resolve preset → config file → flags into a TrainConfig; also returns --resume."""
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--preset")
    pre.add_argument("--config", type=Path)
    pre.add_argument("--resume", type=Path)
    pre.add_argument("--env-module", action="append", default=[])
    known, rest = pre.parse_known_args(argv)
    _import_env_modules(known.env_module)
    base: dict[str, Any] = {}
    if known.resume is not None:
        from trustpg.run import saved_config

        base = dict(saved_config(known.resume))
    if known.config is not None:
        base.update(_load_config_file(known.config))
    if known.preset is not None:
        env = _peek_env(rest) or base.get("env", TrainConfig.env)
        base = {**preset_overrides(known.preset, env), **base}
    try:
        default = TrainConfig.from_dict(base)
    except (TypeError, ValueError) as e:
        raise UserError(f"config: {e}") from None
    description = (
        "Train VPG, NPG or TRPO. Extra options: --preset NAME (classic, mujoco), "
        "--config FILE (.toml or .json; a run's config.json reproduces it), --resume RUN_DIR, "
        "--env-module PKG (import a package that registers envs). Flags override all of these."
    )
    with deferred_validation(), _one_line_parse_errors():
        config = tyro.cli(TrainConfig, args=rest, default=default, prog="trustpg train",
                          description=description)  # fmt: skip
    validate(config)
    return config, known.resume


def _import_env_modules(modules: list[str]) -> None:
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise UserError(f"--env-module {module}: cannot import: {e}") from None


@contextlib.contextmanager
def _one_line_parse_errors() -> Iterator[None]:
    """tyro reports a bad flag in a multi-line box; turn it into a UserError (one line, exit 2).
    ``--help`` (exit 0) passes through untouched."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            yield
    except SystemExit as e:
        if e.code in (0, None):
            sys.stderr.write(captured.getvalue())
            raise
        raise UserError(_box_text(captured.getvalue()) + " (see trustpg train --help)") from None
    sys.stderr.write(captured.getvalue())


def _box_text(box: str) -> str:
    """The message inside tyro's error box: its lines up to the first rule, joined."""
    lines = []
    for raw in box.splitlines()[1:]:  # the first line is the box's title
        text = raw.strip().strip("│╭╮╰╯").strip()
        if set(text) <= set("─ "):
            if lines:
                break
            continue
        lines.append(text)
    return " ".join(" ".join(lines).split()) or "invalid arguments"


def _peek_env(args: list[str]) -> str | None:
    for i, a in enumerate(args):
        if a == "--env" and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("--env="):
            return a.split("=", 1)[1]
    return None


def cmd_train(argv: list[str]) -> int:
    from trustpg.run import train_in_dir

    config, resume = parse_train_args(argv)
    return train_in_dir(config, resume)


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
    from trustpg.agent import Agent

    p = argparse.ArgumentParser(prog="trustpg eval", description="Evaluate a trained agent.")
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
    _import_env_modules(args.env_module)
    if args.video is not None and not os.environ.get("DISPLAY"):
        os.environ.setdefault("MUJOCO_GL", "egl")  # headless MuJoCo rendering
    agent = Agent.load(_checkpoint_for(args.run, args.checkpoint))
    mean, std, _ = agent.evaluate(args.episodes, args.deterministic, args.seed, video=args.video,
                                  max_episode_steps=args.max_episode_steps)  # fmt: skip
    if args.video is not None:
        print(f"wrote {args.video}")
    kind = "deterministic" if args.deterministic else "stochastic"
    print(f"{agent.config.env} {agent.config.algo.upper()} ({kind}, {args.episodes} episodes): "
          f"{mean:.2f} ± {std:.2f}")  # fmt: skip
    return 0


def cmd_plot(argv: list[str]) -> int:
    from trustpg.plotting import plot_runs

    p = argparse.ArgumentParser(prog="trustpg plot", description="Plot learning curves.")
    p.add_argument("runs", type=Path, nargs="+", help="run directories (holding metrics.csv)")
    p.add_argument("--out", type=Path, default=Path("curves.png"))
    p.add_argument("--x", default="env_steps", help="x column: env_steps or wall_time")
    p.add_argument("--y", default="mean_return", help="any metrics.csv column")
    args = p.parse_args(argv)
    out = plot_runs(args.runs, args.out, x=args.x, y=args.y)
    print(f"wrote {out}")
    return 0


def cmd_compare(argv: list[str]) -> int:
    from trustpg.compare import compare_main

    return compare_main(argv)


def cmd_experiment(argv: list[str]) -> int:
    from trustpg.experiments import run_experiment

    return run_experiment(argv)
