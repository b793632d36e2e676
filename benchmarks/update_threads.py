"""Time the TRPO policy update with 1 and 2 intra-op threads (``update_threads``), interleaved.

    python benchmarks/update_threads.py --env Hopper-v5 --repeats 15 --label idle
    python benchmarks/update_threads.py --env Hopper-v5 --repeats 15 --label "2 runs alongside"

Trains the MuJoCo preset for three batches, keeps the third batch and the policy before its update,
then times ``TRPO.update`` on that batch from the same parameters, alternating 1 and 2 threads.
Prints the medians (ms per update) and appends them, with the label and the load average, to
benchmarks/results/update_threads.json. The label says what else ran on the machine: the answer
depends on whether the second core is free (docs/performance.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from trustpg import TRPO
from trustpg.config.presets import preset_overrides
from trustpg.core import rules as steps
from trustpg.core.linalg import flat_params, set_flat_params
from trustpg.io.manifest import provenance

RESULTS = Path(__file__).resolve().parent / "results" / "update_threads.json"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--env", default="Hopper-v5")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--label", required=True, help="what else the machine was doing")
    args = p.parse_args()
    over = {**preset_overrides("mujoco", args.env), "progress": False}
    seen: dict[str, Any] = {}
    original = steps.TRPO.update

    def keep(self: steps.TRPO, actor: torch.nn.Module, batch: steps.PolicyBatch) -> steps.StepStats:
        seen.update(rule=self, actor=actor, batch=batch, theta=flat_params(actor).clone())
        return original(self, actor, batch)

    steps.TRPO.update = keep  # type: ignore[method-assign]
    agent = TRPO(args.env, seed=0, **over)
    agent.learn(3 * over["num_envs"] * over["steps_per_env"])
    agent.close()
    steps.TRPO.update = original  # type: ignore[method-assign]
    times: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(args.repeats):
        for n in times:
            torch.set_num_threads(n)
            set_flat_params(seen["actor"], seen["theta"])
            t = time.perf_counter()
            seen["rule"].update(seen["actor"], seen["batch"])
            times[n].append(1e3 * (time.perf_counter() - t))
    med = {n: statistics.median(v) for n, v in times.items()}
    print(f"{args.env} ({args.label}): 1 thread {med[1]:.1f} ms, 2 threads {med[2]:.1f} ms per update, "
          f"ratio 2/1 = {med[2] / med[1]:.2f}")  # fmt: skip
    command = "python benchmarks/update_threads.py " + " ".join(sys.argv[1:])
    record = {"command": command, "env": args.env, "label": args.label, "load_average": os.getloadavg(),
              "median_ms": med, "ms": times, "provenance": provenance()}  # fmt: skip
    old = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    RESULTS.write_text(json.dumps([*old, record], indent=2) + "\n")


if __name__ == "__main__":
    main()
