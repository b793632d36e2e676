"""MuJoCo learning benchmark: env × algo × seed, resumable; ``report`` writes docs/benchmarks.md.

    python benchmarks/mujoco_bench.py run --envs Hopper-v5 HalfCheetah-v5 --algos trpo sb3-trpo --seeds 0 1 2
    python benchmarks/mujoco_bench.py report

    python benchmarks/mujoco_bench.py run --envs Hopper-v5 --variant anneal --set max_kl_final=0.002

Each run lives in bench-runs/mujoco/<env>/<algo>/s<seed>/ (metrics.csv, config.json, summary.json);
with ``--variant NAME --set KEY=VALUE ...`` (the preset plus these ``trustpg train`` flags) it
lives in bench-runs/ablations/<env>__<NAME>__<algo>__s<seed>/ and the report's ablation table
lists it;
a run with a summary.json is finished and skipped, an unfinished trustpg run is resumed
from its last checkpoint. trustpg runs train through ``trustpg train``'s orchestrator with the
mujoco preset; sb3-trpo runs use benchmarks/sb3_runner.py (RL Zoo hyperparameters; needs
``pip install -e .[bench]``). This is the layout of the runs made before 2026-12-02, which have no
manifest; the benchmark of record (commit in the path, an index, intervals) is benchmarks/suite.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "bench-runs" / "mujoco"
DOC = ROOT / "docs" / "benchmarks.md"
FIG = ROOT / "docs" / "figures" / "mujoco_curves.png"
TARGETS = {  # env: (TRPO target, best published TRPO at 1M, NPG target)
    "Hopper-v5": (3400, "3372 ± 215 (sb3-contrib docs)", 2000),
    "Walker2d-v5": (4600, "4502 ± 234 (sb3-contrib docs)", 2600),
    "HalfCheetah-v5": (4500, "4471 ± 805 (Tianshou, best during training)", 3500),
    "Ant-v5": (3600, "3554 ± 591 (sb3-contrib docs)", 2400),
    "Swimmer-v5": (360, "359 ± 2 (sb3-contrib docs)", 100),
}


def run_dir(env: str, algo: str, seed: int, variant: str | None) -> Path:
    if variant is None:
        return RUNS / env / algo / f"s{seed}"
    return RUNS.parent / "ablations" / f"{env}__{variant}__{algo}__s{seed}"


def run_one(env: str, algo: str, seed: int, steps: int, variant: str | None = None,
            sets: list[str] | None = None) -> None:  # fmt: skip
    """One run through the run orchestrator (``trustpg train``'s own code path, in this process)."""
    from suite import parse_sets  # type: ignore[import-not-found]  # benchmarks/suite.py

    from trustpg.app.run import train_in_dir
    from trustpg.config.presets import preset_overrides
    from trustpg.config.train_config import TrainConfig

    out = run_dir(env, algo, seed, variant)
    if (out / "summary.json").exists():
        print(f"done already: {out}")
        return
    if algo == "sb3-trpo":
        import sb3_runner  # type: ignore[import-not-found]

        sb3_runner.run(env, seed, steps, out)
        return
    over = {**preset_overrides("mujoco", env), **parse_sets(sets or [])}
    over.update(steps=steps, progress=False, checkpoint_every=50, run_dir=out.parent, run_name=out.name)
    config = TrainConfig(env=env, algo=algo, seed=seed, **over)
    resume = out if (out / "checkpoints" / "last.safetensors").exists() else None
    if train_in_dir(config, resume) != 0:
        raise SystemExit(f"{out}: training failed")


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--envs", nargs="+", default=list(TARGETS))
    r.add_argument("--algos", nargs="+", default=["trpo"])
    r.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    r.add_argument("--steps", type=int, default=1_000_000)
    r.add_argument("--variant", help="name of an ablation (runs go to bench-runs/ablations/)")
    r.add_argument(
        "--set",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="flags on top of the preset",
    )
    sub.add_parser("report")
    args = p.parse_args()
    if args.cmd == "run":
        if bool(args.variant) != bool(args.set):
            p.error("--variant and --set go together: a variant is the preset plus its --set flags")
        for seed in args.seeds:
            for env in args.envs:
                for algo in args.algos:
                    run_one(env, algo, seed, args.steps, args.variant, args.set)
    else:
        from bench_report import write_report  # type: ignore[import-not-found]

        write_report(RUNS, DOC, FIG, TARGETS)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
