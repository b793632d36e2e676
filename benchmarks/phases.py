"""Where the wall time of training goes, per env step, without profiler overhead.

    python benchmarks/phases.py --env Hopper-v5 --steps 20480
    python benchmarks/phases.py --env Hopper-v5 --critic thread      # or: sequential
    python benchmarks/phases.py --env Hopper-v5 --fvp-stride 2
    python benchmarks/phases.py --env Hopper-v5 --cg-iters 10
    python benchmarks/phases.py --env Hopper-v5 --label after   # also appends to results/phases.json

Trains TRPO with the MuJoCo preset (after a 4,096-step warm-up), timing the phases by wrapping
them, then steps the same vector env with random actions (the raw limit of
benchmarks/throughput.py). Prints µs per env step of each phase and the ratio to raw. The
phases nest: collection contains env stepping, action sampling and the wait for the critic.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from throughput import _raw  # type: ignore[import-not-found]  # benchmarks/throughput.py

import trustpg
from trustpg import TRPO
from trustpg.accel import fast_actor
from trustpg.config.presets import preset_overrides
from trustpg.core import rules as steps
from trustpg.sampling import rollout
from trustpg.train import value


def _timed(owner: Any, name: str, key: str, totals: dict[str, float]) -> None:
    f: Callable[..., Any] = getattr(owner, name)

    def wrapper(*args: Any, **kw: Any) -> Any:
        t = time.perf_counter()
        try:
            return f(*args, **kw)
        finally:
            totals[key] = totals.get(key, 0.0) + time.perf_counter() - t

    setattr(owner, name, wrapper)


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
    totals: dict[str, float] = {}
    _timed(rollout.Collector, "collect", "collection", totals)
    _timed(fast_actor.NumpyActor, "sample", "  action sampling", totals)
    _timed(value.CriticFitter, "finish", "  waiting for the critic fit", totals)
    _timed(steps.TRPO, "update", "policy update", totals)
    agent = TRPO(args.env, seed=0, **over)
    agent.learn(4096)
    assert agent.trainer.collector is not None
    _timed(agent.trainer.collector.env, "step", "  env stepping", totals)
    totals.clear()
    t = time.perf_counter()
    agent.learn(args.steps)
    total = time.perf_counter() - t
    agent.close()
    n = over["num_envs"]
    raw_s = args.steps / _raw(args.env, n, args.steps, "sync", agent.config.env_kwargs_dict())
    us = 1e6 / args.steps
    rates = f"{args.steps / total:.0f} steps/s, raw {args.steps / raw_s:.0f} steps/s"
    print(f"{args.env}, {n} envs, critic {args.critic}, fvp_stride {args.fvp_stride}, "
          f"cg_iters {agent.config.cg_iters}, "
          f"update threads {agent.trainer.update_threads}: {rates}, "
          f"ratio {raw_s / total:.2f}")  # fmt: skip
    print("| phase | µs per env step | share |\n|---|---|---|")
    print(f"| total | {total * us:.1f} | 100% |")
    for key in ("collection", "  env stepping", "  action sampling", "  waiting for the critic fit",
                "policy update"):  # fmt: skip
        print(f"| {key} | {totals.get(key, 0.0) * us:.1f} | {totals.get(key, 0.0) / total:.0%} |")
    print(f"| raw random-action stepping | {raw_s * us:.1f} | |")
    if args.label is not None:
        record = {"label": args.label, "command": "python benchmarks/phases.py " + " ".join(sys.argv[1:]),
                  "trustpg": str(Path(trustpg.__file__).parent), "env": args.env,
                  "cg_iters": agent.config.cg_iters,
                  "us_per_env_step": {k.strip(): v * us for k, v in totals.items()},
                  "total_us": total * us, "raw_us": raw_s * us, "ratio": raw_s / total}  # fmt: skip
        out = Path(__file__).resolve().parent / "results" / "phases.json"
        records = json.loads(out.read_text()) if out.exists() else []
        out.write_text(json.dumps([*records, record], indent=1) + "\n")


if __name__ == "__main__":
    main()
