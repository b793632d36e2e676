"""``trustpg train --seeds 0 1 2 ...``: one run per seed, in parallel worker processes, then a table.

Every seed's config is resolved by ``trustpg train``'s own parser (preset → config file → flags,
with ``--seed`` set to the seed), and every run trains through the same orchestrator
(:func:`trustpg.app.run.train_in_dir`) in a worker process of its own
(:mod:`trustpg.app.workers`), at most ``--jobs`` at a time (default: the usable cores). Run
directories are named as ``trustpg train`` names them, one per seed: ``<env>__<algo>__s<seed>__<time>``
with one time for all of them, or ``<run-name>__s<seed>`` with ``--run-name``.
Everything is checked before the first worker starts (bad input: one line, exit 2, nothing made).

Ctrl-C stops every run after its current update with a checkpoint (as ``trustpg train`` does);
the command lists the runs to continue with ``trustpg train --resume`` and exits with 130.
"""

from __future__ import annotations

import time
from pathlib import Path

from trustpg.app import interrupts
from trustpg.app.guard import OneLineParser
from trustpg.app.train_args import parse_train_args
from trustpg.app.workers import Pool, overall_status
from trustpg.config.train_config import MAX_SEED, TrainConfig, usable_cores
from trustpg.errors import UserError


def wants_seeds(argv: list[str]) -> bool:
    return any(a == "--seeds" or a.startswith("--seeds=") for a in argv)


def _int(flag: str, text: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise UserError(f"{flag} {text!r} is not an integer") from None
    if not low <= value <= high:
        raise UserError(f"{flag} {value} is invalid: must be in [{low}, {high}]")
    return value


def parse_seeds(argv: list[str]) -> tuple[list[int], int, list[str]]:
    """(seeds, parallel jobs, the other train flags); UserError (one line) for bad values."""
    pre = OneLineParser(prog="trustpg train", add_help=False, allow_abbrev=False)
    pre.add_argument("--seeds", nargs="*", default=[])
    pre.add_argument("--jobs", default=None)
    known, rest = pre.parse_known_args(argv)
    if not known.seeds:
        raise UserError("--seeds needs one or more seeds, e.g. --seeds 0 1 2")
    seeds = [_int("--seeds", s, 0, MAX_SEED - 1) for s in known.seeds]
    if len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds {' '.join(known.seeds)}: a seed is repeated (each seed is one run)")
    for flag in ("--seed", "--resume"):
        if any(a == flag or a.startswith(flag + "=") for a in rest):
            hint = "give every seed to --seeds" if flag == "--seed" else (
                "continue each run with trustpg train --resume RUN_DIR")  # fmt: skip
            raise UserError(f"--seeds cannot be combined with {flag}: {hint}")
    cores = usable_cores()
    jobs = cores if known.jobs is None else _int("--jobs", known.jobs, 1, 1024)
    return seeds, min(jobs, len(seeds)), rest


def plan_seeds(argv: list[str]) -> tuple[list[TrainConfig], int]:
    """One config per seed (with its run name) and the number of runs at a time."""
    seeds, jobs, rest = parse_seeds(argv)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    configs = []
    for seed in seeds:
        config, _ = parse_train_args([*rest, "--seed", str(seed)])
        base = config.run_name or f"{config.env}__{config.algo}"
        name = f"{base}__s{seed}" + ("" if config.run_name else f"__{stamp}")
        # one progress bar per terminal: several runs at once report by lines from this process
        configs.append(config.replace(run_name=name, progress=config.progress and jobs == 1))
    return configs, jobs


def run_dir(config: TrainConfig) -> Path:
    assert config.run_name is not None
    return config.run_dir / config.run_name


def check_targets(configs: list[TrainConfig]) -> None:
    """Before any worker starts: every run directory can be made and holds no run, and the env and
    sizes are valid (the first config builds an agent, which writes nothing)."""
    from trustpg.io.rundir import check_new_run
    from trustpg.train.agent import Agent

    for config in configs:
        check_new_run(run_dir(config))
    Agent(configs[0]).close()


def train_one(config: TrainConfig) -> int:
    """A worker's job: one seed's run, as ``trustpg train`` trains it."""
    from trustpg.app.run import train_in_dir

    return train_in_dir(config, None)


def train_seeds(argv: list[str]) -> int:
    """``trustpg train --seeds ...``: 0 when every run finished, 130 after Ctrl-C, else the first
    failing run's status."""
    configs, jobs = plan_seeds(argv)
    check_targets(configs)
    interrupts.release()  # a Ctrl-C while starting stops here, before any worker starts
    from trustpg.app.compare import finished, last_steps, summary_table

    runs = [run_dir(c) for c in configs]
    print(f"training {len(runs)} seeds, {jobs} at a time: {', '.join(str(r) for r in runs)}")

    def tick() -> None:
        print("  " + ", ".join(f"s{c.seed} {last_steps(r) or 0}/{c.steps}" for c, r in zip(configs, runs)))

    bars = any(c.progress for c in configs)  # one run at a time shows its own progress bar
    pool = Pool([(train_one, (c,)) for c in configs], jobs, tick=None if bars else tick, tick_seconds=30.0)
    statuses = pool.run()
    print(summary_table({r: c.to_dict() for r, c in zip(runs, configs)}), end="")
    unfinished = [r for r in runs if not finished(r)]
    if unfinished:
        print(f"{len(runs) - len(unfinished)} of {len(runs)} runs finished; continue the others with:")
        for r in unfinished:
            print(f"  trustpg train --resume {r}")
    return overall_status(statuses, pool.stopped > 0)
