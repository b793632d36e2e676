"""The benchmark of record (issue 23): runs laid out by suite/commit/env/algo/variant/seed, an
index built from them, and the docs tables built from the index.

    python benchmarks/suite.py run --suite mujoco-v5 --envs InvertedPendulum-v5 --algos trpo npg --seeds 0-9
    python benchmarks/suite.py run --suite mujoco-v5 --envs Hopper-v5 --set cg_iters=25 --seeds 0-4
    python benchmarks/suite.py run --suite mujoco-v5 --envs Hopper-v5 --algos sb3-trpo --seeds 0-2
    python benchmarks/suite.py index     # bench-runs/index.json from every run directory
    python benchmarks/suite.py report    # docs/benchmarks.md's generated section + figures

A run lives in ``bench-runs/<suite>/<commit>/<env>/<algo>/<variant>/s<seed>/``: ``<commit>`` is the
first 12 digits of trustpg's commit (the code must be committed: a dirty tree is refused, since
its numbers could not be traced), ``<variant>`` is ``preset`` or the differences from the mujoco
preset as ``key=value`` pairs (``cg_iters=25``), never a name chosen by hand. trustpg runs train
through the run orchestrator (:func:`trustpg.app.run.train_in_dir`) in worker processes, ``--jobs``
at a time; every run writes manifest.json (commit, versions, machine, command, config hash).
A peer (sb3-trpo: RL Zoo's hyperparameters) trains on the env as the preset makes it (the preset's
``env_kwargs``), so both sides see the same observations. A finished run (summary.json) is
skipped, an unfinished one resumed. After a run its
metrics.csv is compressed to metrics.csv.gz (``trustpg plot`` reads either).
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "bench-runs"
PEERS = ("sb3-trpo",)
#: The preset (trustpg.config.presets) each suite's runs start from; variants are named by their
#: differences from it.
SUITE_PRESETS = {"mujoco-v5": "mujoco", "pomdp": "classic", "minatar": "classic"}
#: Each suite's step budget (per env where they differ; "*" for the rest): MuJoCo's 1M steps, the
#: MinAtar paper's 5M frames, the POMDPs' budgets (docs/benchmarks.md). ``--steps`` defaults to it;
#: a run with another budget is a variant (``steps=500000``), so runs of different lengths never
#: share a directory, a table row, or a "done already".
SUITE_STEPS: dict[str, dict[str, int]] = {
    "mujoco-v5": {"*": 1_000_000},
    "pomdp": {"*": 200_000, "trustpg/CartPoleNoVel-v1": 50_000},
    "minatar": {"*": 5_000_000},
}


def budget(suite: str, env: str) -> int:
    """The step budget of ``env``'s runs in ``suite``."""
    table = SUITE_STEPS[suite]
    return table.get(env, table["*"])


def seeds(text: str) -> list[int]:
    """``0-9`` or ``0,3,5`` or ``7``."""
    out: list[int] = []
    for part in text.split(","):
        lo, sep, hi = part.partition("-")
        out += list(range(int(lo), int(hi) + 1)) if sep else [int(lo)]
    return out


def parse_sets(items: list[str]) -> dict[str, Any]:
    """``key=value`` pairs as TrainConfig fields (values parsed as JSON where they are JSON)."""
    import json

    from trustpg.config.train_config import TrainConfig

    fields = set(TrainConfig.__dataclass_fields__)
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in fields:
            raise SystemExit(f"--set {item!r}: expected FIELD=VALUE with a TrainConfig field")
        if key == "steps":  # the budget is --steps, which names the variant when it differs
            raise SystemExit(f"--set {item!r}: give the run's length as --steps {value}")
        if key == "env_kwargs":  # a field that holds JSON text: kept as text
            out[key] = value
            continue
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def variant_name(
    env: str, sets: dict[str, Any], preset_name: str = "mujoco", steps: int | None = None,
    suite_steps: int | None = None,
) -> str:  # fmt: skip
    """``preset``, or the fields of ``sets`` that differ from the suite's preset, sorted, and
    ``steps=N`` when the run's ``steps`` is not the suite's budget ``suite_steps``."""
    import json

    from trustpg.config.presets import preset_overrides
    from trustpg.config.train_config import TrainConfig

    preset = preset_overrides(preset_name, env)
    base = TrainConfig(env=env, **preset).to_dict()
    ours = TrainConfig(env=env, **{**preset, **sets}).to_dict()  # compared as the config stores them
    diff = {k: ours[k] for k in sets if base.get(k) != ours[k]}
    # A string as --set takes it (policy=gru), anything else as JSON (normalize_obs=false).
    shown = {k: v if isinstance(v, str) else json.dumps(v, separators=(",", ":")) for k, v in diff.items()}
    if steps is not None and steps != suite_steps:
        shown["steps"] = str(steps)
    text = ",".join(f"{k}={v}" for k, v in sorted(shown.items()))
    return text or "preset"  # values as --set takes them: normalize_obs=false, hidden_sizes=[32,32]


def commit_dir() -> str:
    from trustpg.io.manifest import code_version

    v = code_version()
    if v["commit"] is None:
        raise SystemExit("trustpg is not a git checkout here: a suite run must name its commit")
    if v["dirty"]:
        raise SystemExit("src/ or pyproject.toml has uncommitted changes: commit them first, so "
                         "the runs can be traced to the code that made them")  # fmt: skip
    return str(v["commit"])[:12]


def run_dir(suite: str, commit: str, env: str, algo: str, variant: str, seed: int) -> Path:
    # A namespaced id (trustpg/CartPoleNoVel-v1) is one directory: trustpg_CartPoleNoVel-v1.
    return RUNS / suite / commit / env.replace("/", "_") / algo / variant / f"s{seed}"


def compress_metrics(run: Path) -> None:
    src = run / "metrics.csv"
    if src.is_file():
        with open(src, "rb") as f, gzip.open(src.with_suffix(".csv.gz"), "wb", compresslevel=9) as g:
            shutil.copyfileobj(f, g)
        src.unlink()


def train_trustpg(config: Any, resume: bool) -> int:
    """One trustpg run through the orchestrator (in a worker process); compress its log after."""
    from trustpg.app.run import train_in_dir

    run = config.run_dir / config.run_name
    status = train_in_dir(config, run if resume else None)
    if status == 0 and (run / "summary.json").is_file():
        compress_metrics(run)
    return status


def peer_env_kwargs(preset: str, env: str, sets: dict[str, Any]) -> dict[str, Any]:
    """The env a peer trains on: the one trustpg's preset makes (its ``env_kwargs``, e.g. Ant-v5
    without the contact forces that v2-v4 lacked, where RL Zoo's settings were tuned), or
    ``--set env_kwargs=...``. A peer has its own hyperparameters, so no other field may be set."""
    import json

    from trustpg.config.presets import preset_overrides

    if other := sorted(set(sets) - {"env_kwargs"}):
        raise SystemExit(f"--set {', '.join(other)}: a peer has its own settings; only env_kwargs applies")
    text = sets.get("env_kwargs", preset_overrides(preset, env).get("env_kwargs", "{}"))
    return dict(json.loads(text) if isinstance(text, str) else text)


def train_peer(algo: str, env: str, seed: int, steps: int, out: Path, env_kwargs: dict[str, Any]) -> int:
    import sb3_runner  # type: ignore[import-not-found]  # benchmarks/sb3_runner.py

    sb3_runner.run(env, seed, steps, out, env_kwargs)
    compress_metrics(out)
    return 0


def jobs_for(args: argparse.Namespace) -> list[tuple[Any, tuple[Any, ...]]]:
    from trustpg.config.presets import preset_overrides
    from trustpg.config.train_config import TrainConfig

    if args.suite not in SUITE_PRESETS:
        raise SystemExit(f"unknown suite {args.suite!r}; known: {', '.join(SUITE_PRESETS)}")
    preset = SUITE_PRESETS[args.suite]
    commit = commit_dir()
    sets = parse_sets(args.set)
    jobs: list[tuple[Any, tuple[Any, ...]]] = []
    for seed in seeds(args.seeds):
        for env in args.envs:
            full = budget(args.suite, env)
            steps = full if args.steps is None else args.steps
            variant = variant_name(env, sets, preset, steps, full)
            for algo in args.algos:
                out = run_dir(args.suite, commit, env, algo, variant, seed)
                if (out / "summary.json").is_file():
                    print(f"done already: {out}")
                    continue
                if algo in PEERS:
                    kwargs = peer_env_kwargs(preset, env, sets)
                    jobs.append((train_peer, (algo, env, seed, steps, out, kwargs)))
                    continue
                over = {**preset_overrides(preset, env), **sets}
                over.update(steps=steps, progress=False, checkpoint_every=50,
                            run_dir=out.parent, run_name=out.name)  # fmt: skip
                config = TrainConfig(env=env, algo=algo, seed=seed, **over)
                jobs.append((train_trustpg, (config, (out / "checkpoints").is_dir())))
    return jobs


def main() -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--suite", default="mujoco-v5")
    r.add_argument("--envs", nargs="+", required=True)
    r.add_argument("--algos", nargs="+", default=["trpo"], help=f"trpo, npg, vpg or a peer: {PEERS}")
    r.add_argument("--seeds", default="0-9", help="0-9, 0,3,5 or 7")
    r.add_argument("--steps", type=int, help="default: the suite's budget (SUITE_STEPS); else a variant")
    r.add_argument("--set", nargs="+", action="extend", default=[], metavar="FIELD=VALUE")
    r.add_argument("--jobs", type=int, default=1, help="runs at a time (each uses ~2 cores at peak)")
    sub.add_parser("index")
    rep = sub.add_parser("report")
    rep.add_argument("--reps", type=int, default=50_000, help="bootstrap resamples")
    args = p.parse_args()
    if args.cmd == "index":
        from suite_index import write_index  # type: ignore[import-not-found]

        write_index(RUNS)
        return 0
    if args.cmd == "report":
        from suite_report import write_report  # type: ignore[import-not-found]

        write_report(RUNS, ROOT / "docs", args.reps)
        return 0
    from trustpg.app.workers import Pool, overall_status

    jobs = jobs_for(args)
    pool = Pool(jobs, max(1, args.jobs))
    statuses = pool.run()
    return overall_status(statuses, pool.stopped)


if __name__ == "__main__":
    sys.exit(main())
