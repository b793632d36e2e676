"""MuJoCo learning benchmark: env × algo × seed, resumable; ``report`` writes docs/benchmarks.md.

    python benchmarks/mujoco_bench.py run --envs Hopper-v5 HalfCheetah-v5 --algos trpo sb3-trpo --seeds 0 1 2
    python benchmarks/mujoco_bench.py report

    python benchmarks/mujoco_bench.py run --envs Hopper-v5 --variant anneal --set max_kl_final=0.002

Each run lives in bench-runs/mujoco/<env>/<algo>/s<seed>/ (metrics.csv, config.json, summary.json);
with ``--variant NAME --set KEY=VALUE ...`` (the preset plus these ``trustpg train`` flags) it
lives in bench-runs/ablations/<env>__<NAME>__<algo>__s<seed>/ and the report's ablation table
lists it;
a run with a summary.json is finished and skipped, an unfinished trustpg run is resumed
from its last checkpoint. trustpg runs use ``trustpg train --preset mujoco``; sb3-trpo runs use
benchmarks/sb3_runner.py (RL Zoo hyperparameters; needs ``pip install -e .[bench]``).
"""

from __future__ import annotations

import argparse
import subprocess
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


def override_flags(sets: list[str]) -> list[str]:
    """``KEY=VALUE`` pairs as ``trustpg train`` flags (``max_kl_final=0.002`` -> ``--max-kl-final 0.002``)."""
    flags: list[str] = []
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set takes KEY=VALUE (a TrainConfig field), got {item!r}")
        flags += [f"--{key.replace('_', '-')}", *value.split()]  # "vf_hidden_sizes=256 256"
    return flags


def run_one(env: str, algo: str, seed: int, steps: int, variant: str | None = None,
            sets: list[str] | None = None) -> None:  # fmt: skip
    out = run_dir(env, algo, seed, variant)
    if (out / "summary.json").exists():
        print(f"done already: {out}")
        return
    if algo == "sb3-trpo":
        cmd = [sys.executable, str(ROOT / "benchmarks" / "sb3_runner.py"), "--env", env,
               "--seed", str(seed), "--steps", str(steps), "--out", str(out)]  # fmt: skip
    elif (out / "checkpoints" / "last.safetensors").exists():
        cmd = ["trustpg", "train", "--resume", str(out), "--no-progress"]
    else:
        cmd = ["trustpg", "train", "--preset", "mujoco", "--env", env, "--algo", algo,
               "--seed", str(seed), "--steps", str(steps), "--run-dir", str(out.parent),
               "--run-name", out.name, "--no-progress", "--checkpoint-every", "50",
               *override_flags(sets or [])]  # fmt: skip
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


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
