"""``trustpg tune``: hyperparameter search with Optuna (``pip install 'trustpg[tune]'``).

Each trial samples a config from the search space (:mod:`trustpg.app.tune_space`) on top of the
config ``trustpg train`` would resolve from the other flags, and trains it through the run
orchestrator (:meth:`trustpg.train.agent.Agent.learn` with a run directory, ``OUT/trial_NNNN``).
It is evaluated ``--evals`` times along the way (deterministic, ``--eval-episodes`` episodes);
each evaluation is reported to Optuna, whose median pruner stops a trial that falls below the
median of earlier trials at the same step. The trial's value is its final evaluation.

The study lives in SQLite (``OUT/study.db``, or ``--storage``): several ``trustpg tune``
processes (``--jobs N`` starts them, ``--workers N`` runs them as Ray tasks:
:mod:`trustpg.app.tune_ray`) share it, and rerunning the same command continues an
interrupted tune up to ``--trials`` finished trials in all (complete, pruned or failed); a trial
that Ctrl-C cut short is tried again with the same parameters. Results: ``OUT/trials.md`` and
``OUT/trials.csv`` (every trial), ``OUT/best.toml`` (the best trial's config:
``trustpg train --config OUT/best.toml`` trains it again).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trustpg.app.guard import OneLineParser
from trustpg.app.train_args import parse_train_args
from trustpg.app.tune_space import load_space
from trustpg.app.tune_trial import BadTrial, Tune, objective, optuna_module
from trustpg.config.train_config import usable_cores
from trustpg.errors import UserError
from trustpg.io.rundir import check_creatable, env_part

RESERVED = ("--algo", "--env", "--steps", "--seed", "--run-dir", "--run-name", "--resume",
            "--eval-every", "--eval-episodes")  # fmt: skip
INTERRUPTED = 130


def parse_args(argv: list[str]) -> Tune:
    p = OneLineParser(
        prog="trustpg tune", allow_abbrev=False,
        description="Search hyperparameters with Optuna (TPE sampler, median pruner). Rerun the "
        "same command to continue an interrupted tune.",
        epilog="Any other option is a `trustpg train` option for every trial (e.g. --preset "
        "classic, --config base.toml, --max-kl 0.02 for a field the space does not search).",
    )  # fmt: skip
    p.add_argument("--env", default="CartPole-v1", help="Gymnasium environment id")
    p.add_argument("--algo", default="trpo", choices=["trpo", "npg", "vpg"])
    p.add_argument("--trials", type=int, default=20, help="finished trials in all (default 20)")
    p.add_argument("--steps", type=int, default=50_000, help="env steps per trial (default 50000)")
    p.add_argument("--space", type=Path, default=None, help="search space file (.toml or .json) "
                   "overriding the algorithm's default space (docs/usage.md)")  # fmt: skip
    p.add_argument("--out", type=Path, default=None, help="directory for the trials' runs, the "
                   "study and the results (default runs/tune__<env>__<algo>)")  # fmt: skip
    p.add_argument("--storage", default=None, help="Optuna storage URL (default sqlite:///OUT/study.db)")
    p.add_argument("--study-name", default="tune", help="study name in the storage (default tune)")
    p.add_argument("--jobs", type=int, default=1, help="tune processes sharing the study (default 1)")
    p.add_argument("--workers", type=int, default=0, help="run the tune processes as this many Ray "
                   "tasks instead (pip install 'trustpg[ray]')")  # fmt: skip
    p.add_argument("--ray-address", default=None, help="with --workers: a running Ray cluster "
                   "(needs --storage with a database URL every node reaches)")  # fmt: skip
    p.add_argument("--evals", type=int, default=5, help="evaluations per trial, reported for pruning")
    p.add_argument("--eval-episodes", type=int, default=5, help="episodes per evaluation (default 5)")
    p.add_argument("--seed", type=int, default=0, help="training seed of every trial and the sampler's")
    p.add_argument("--no-prune", dest="prune", action="store_false", help="never stop a trial early")
    args, rest = p.parse_known_args(argv)
    lows = (("trials", 1), ("steps", 1), ("jobs", 1), ("workers", 0), ("evals", 1), ("eval_episodes", 1))
    for name, low in lows:
        if getattr(args, name) < low:
            raise UserError(f"--{name.replace('_', '-')} must be >= {low}, got {getattr(args, name)}")
    if args.workers and args.jobs > 1:
        raise UserError("give --jobs (processes here) or --workers (Ray tasks), not both")
    if args.ray_address is not None and not args.workers:
        raise UserError("--ray-address needs --workers N (the Ray tasks to run there)")
    if args.jobs > usable_cores():
        raise UserError(f"--jobs {args.jobs}: this machine has {usable_cores()} usable cores")
    clash = [a for a in rest if a.split("=", 1)[0] in RESERVED]
    if clash:
        raise UserError(f"trustpg tune sets {', '.join(clash)} itself; use its own options "
                        "(trustpg tune --help)")  # fmt: skip
    out = args.out or Path("runs") / f"tune__{env_part(args.env)}__{args.algo}"
    base, _ = parse_train_args([*rest, "--algo", args.algo, "--env", args.env, "--steps",
                                str(args.steps), "--seed", str(args.seed), "--eval-episodes",
                                str(args.eval_episodes)])  # fmt: skip
    base = base.replace(run_dir=out, progress=False)
    space = load_space(args.space, args.algo, base, _continuous(base.env))
    storage = args.storage or f"sqlite:///{(out / 'study.db').absolute()}"
    if args.workers:
        from trustpg.app.tune_ray import check_ray

        check_ray(storage, args.ray_address)
    return Tune(base, space, out, storage, args.study_name, args.trials, args.evals, args.prune,
                args.jobs, args.workers, args.ray_address)  # fmt: skip


def _continuous(env: str) -> bool:
    """Whether ``env`` has a Box action space (else log σ₀ is not searched by default)."""
    import gymnasium as gym

    try:
        made = gym.make(env)
    except gym.error.Error as e:
        raise UserError(f"--env {env}: {e}") from None
    try:
        return isinstance(made.action_space, gym.spaces.Box)
    finally:
        made.close()


def open_study(t: Tune) -> Any:
    optuna = optuna_module()
    storage: Any = t.storage
    if t.storage.startswith("sqlite:"):  # several processes write it: wait for the lock
        storage = optuna.storages.RDBStorage(t.storage, engine_kwargs={"connect_args": {"timeout": 60}})
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=t.base.steps // 4)
              if t.prune else optuna.pruners.NopPruner())  # fmt: skip
    return optuna.create_study(storage=storage, study_name=t.study_name, direction="maximize",
                               load_if_exists=True, sampler=sampler(t, None), pruner=pruner)  # fmt: skip


def sampler(t: Tune, seed: int | None) -> Any:
    """TPE; random for the first trials (a third of them, 2 to 10)."""
    return optuna_module().samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, t.trials // 3)))


def counted(trial: Any) -> bool:
    """A trial that counts toward ``--trials``: complete, pruned, or failed (not by Ctrl-C)."""
    state = trial.state.name
    return state in ("COMPLETE", "PRUNED") or (state == "FAIL" and not trial.user_attrs.get("interrupted"))


def tune_worker(t: Tune, worker: int, share: int) -> int:
    """One tune process: ``share`` trials at most, fewer once the study holds ``t.trials`` counted
    ones (another process may have run more than its share); 130 on Ctrl-C."""
    study = open_study(t)
    # seeded, yet not the same draws as the other workers' or as before an interruption
    study.sampler = sampler(t, t.base.seed * 1000 + worker * 100 + len(study.trials))
    first = len(study.trials)
    left = min(share, t.trials - sum(counted(tr) for tr in study.trials))
    if left <= 0:
        return 0

    def stop_when_done(study: Any, _trial: Any) -> None:
        if sum(counted(tr) for tr in study.trials) >= t.trials:
            study.stop()

    try:
        study.optimize(lambda trial: objective(t, trial), n_trials=left, callbacks=[stop_when_done],
                       catch=(BadTrial,))  # fmt: skip
    except KeyboardInterrupt:  # outside the training loop, or a second Ctrl-C
        return INTERRUPTED
    mine = [tr for tr in study.trials if tr.user_attrs.get("interrupted") and tr.number >= first]
    return INTERRUPTED if mine else 0


def prepare(t: Tune) -> Any:
    """Before any trial: the study is this tune's (same base config) and interrupted trials are
    queued again with their parameters."""
    from trustpg.io.plotting import result_fields

    optuna_module()  # not installed: one line (MissingExtra) before anything is created
    check_creatable(t.out)
    t.out.mkdir(parents=True, exist_ok=True)
    study = open_study(t)
    wanted = json.loads(json.dumps(result_fields(t.base.to_dict())))
    saved = study.user_attrs.get("base_config")
    if saved is None:
        study.set_user_attr("base_config", wanted)
    elif saved != wanted:
        differ = sorted(k for k in {*saved, *wanted} if saved.get(k) != wanted.get(k))
        raise UserError(f"study {t.study_name!r} in {t.storage} was made with other settings "
                        f"({', '.join(f'{k}={saved.get(k)!r}' for k in differ)}); use another --out, "
                        "--storage or --study-name")  # fmt: skip
    retried = {tr.user_attrs.get("retry_of") for tr in study.trials}
    for tr in study.trials:
        if tr.state.name == "FAIL" and tr.user_attrs.get("interrupted") and tr.number not in retried:
            study.enqueue_trial(tr.params, user_attrs={"retry_of": tr.number})
    return study


def tune_main(argv: list[str]) -> int:
    from trustpg.app.tune_report import write_results
    from trustpg.app.workers import Pool, overall_status

    t = parse_args(argv)
    study = prepare(t)
    done = sum(counted(tr) for tr in study.trials)
    print(f"tune {t.base.algo.upper()} on {t.base.env}: {done} of {t.trials} trials done, "
          f"{t.base.steps} steps each; study {t.study_name!r} in {t.storage}")  # fmt: skip
    status = 0
    if done < t.trials:
        left = t.trials - done
        jobs = min(t.workers or t.jobs, left)
        shares = [left // jobs + (w < left % jobs) for w in range(jobs)]  # N in all, none more
        if t.workers:
            from trustpg.app.tune_ray import run_on_ray

            status = run_on_ray(t, shares, t.ray_address)
        elif jobs == 1:
            status = tune_worker(t, 0, left)
        else:
            pool = Pool([(tune_worker, (t, w, shares[w])) for w in range(jobs)], jobs)
            status = overall_status(pool.run(), pool.stopped > 0)
    write_results(open_study(t), t)
    if status == INTERRUPTED:
        print("tune interrupted; finished trials are kept in the study. Continue with: trustpg tune "
              + " ".join(argv))  # fmt: skip
    return status
