"""Where the wall time of training goes, per env step, from the phase timings every update records.

    python benchmarks/phases.py --env Hopper-v5 --steps 20480
    python benchmarks/phases.py --env Hopper-v5 --critic thread      # or: sequential
    python benchmarks/phases.py --env Hopper-v5 --fvp-stride 2
    python benchmarks/phases.py --env Hopper-v5 --cg-iters 10
    python benchmarks/phases.py --env Hopper-v5 --label after   # also appends to results/phases.json

Trains TRPO with the MuJoCo preset (after a 4,096-step warm-up) and sums the phase columns of
the updates' records (``collect_seconds``, ``critic_wait_seconds``, ``update_seconds``; nothing is
wrapped or patched), then steps the same vector env with random actions (the raw limit of
benchmarks/throughput.py). Prints µs per env step of each phase and the ratio to raw. Collection
contains the wait for the critic that happens inside it. (Results recorded before 2026-12-02 also
split collection into env stepping and action sampling by wrapping those methods; the records do
not, and the raw stepping line below stands for the env's share.)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from throughput import _raw  # type: ignore[import-not-found]  # benchmarks/throughput.py

import trustpg
from trustpg import TRPO
from trustpg.config.presets import preset_overrides
from trustpg.io.manifest import provenance

PHASES = {
    "collection": "collect_seconds",
    "  waiting for the critic fit": "critic_wait_seconds",
    "policy update": "update_seconds",
}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--env", default="Hopper-v5")
    p.add_argument("--steps", type=int, default=20480)
    p.add_argument("--critic", choices=["process", "thread", "sequential"], default="process")
    p.add_argument("--fvp-stride", type=int, default=1)
    p.add_argument("--cg-iters", type=int, default=None, help="default: the preset's")
    p.add_argument("--update-threads", type=int, default=1, help="0: min(2, usable cores)")
    p.add_argument("--label", default=None, help="append the result to results/phases.json under it")
    args = p.parse_args()
    over = preset_overrides("mujoco", args.env)
    over.update(critic_overlap=args.critic != "sequential", critic_process=args.critic == "process",
                fvp_stride=args.fvp_stride, update_threads=args.update_threads,
                progress=False)  # fmt: skip
    if args.cg_iters is not None:
        over["cg_iters"] = args.cg_iters
    agent = TRPO(args.env, seed=0, **over)
    agent.learn(4096)  # warm-up: envs, the critic worker, first resets
    totals: dict[str, float] = {}

    def add(record: Mapping[str, Any]) -> None:
        for key, column in PHASES.items():
            totals[key] = totals.get(key, 0.0) + float(record[column])

    t = time.perf_counter()
    agent.learn(args.steps, callback=add)
    total = time.perf_counter() - t
    agent.close()
    n = over["num_envs"]
    raw_s = args.steps / _raw(args.env, n, args.steps, "sync", agent.config.env_kwargs_dict())
    us = 1e6 / args.steps
    rates = f"{args.steps / total:.0f} steps/s, raw {args.steps / raw_s:.0f} steps/s"
    print(f"{args.env}, {n} envs, critic {args.critic}, fvp_stride {args.fvp_stride}, "
          f"cg_iters {agent.config.cg_iters}, "
          f"update threads {args.update_threads}: {rates}, "
          f"ratio {raw_s / total:.2f}")  # fmt: skip
    print("| phase | µs per env step | share |\n|---|---|---|")
    print(f"| total | {total * us:.1f} | 100% |")
    for key in PHASES:
        print(f"| {key} | {totals.get(key, 0.0) * us:.1f} | {totals.get(key, 0.0) / total:.0%} |")
    print(f"| raw random-action stepping | {raw_s * us:.1f} | |")
    if args.label is not None:
        record = {"label": args.label, "provenance": provenance(),
                  "command": "python benchmarks/phases.py " + " ".join(sys.argv[1:]),
                  "trustpg": str(Path(trustpg.__file__).parent), "env": args.env,
                  "cg_iters": agent.config.cg_iters,
                  "us_per_env_step": {k.strip(): v * us for k, v in totals.items()},
                  "total_us": total * us, "raw_us": raw_s * us, "ratio": raw_s / total}  # fmt: skip
        out = Path(__file__).resolve().parent / "results" / "phases.json"
        records = json.loads(out.read_text()) if out.exists() else []
        out.write_text(json.dumps([*records, record], indent=1) + "\n")


if __name__ == "__main__":
    main()
