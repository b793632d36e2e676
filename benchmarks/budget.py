"""How close to raw env stepping TRPO can get: the parts no learner skips against 0.25x raw.

    python benchmarks/budget.py --env CartPole-v1 --repeats 5     # -> results/budget_CartPole-v1.json
    python benchmarks/budget.py --env HalfCheetah-v5 --repeats 5  # the MuJoCo preset
    python benchmarks/budget.py --env HalfCheetah-v5 --cg-iters 10 --repeats 5   # a what-if

The performance issue asks for training throughput >= 0.8x raw random-action stepping of the
same vector env. That leaves 0.25x the raw step time, per env step, for everything that is not
the simulator. This script measures, in µs per env step (medians of interleaved repeats, one
process, 1 torch thread), the parts a TRPO learner cannot skip and compares them with that budget:

- raw: random-action stepping of trustpg's SyncVectorEnv (the env count trustpg trains with);
- forward: one bare forward pass of the policy per vector step in NumPy (no observation
  normalisation, no sampling): the least any learner that runs a policy network on every step
  pays;
- sampling: trustpg's NumPy sampler per vector step (forward + draw);
- update: trustpg's TRPO policy update with the config trustpg trains this env with (the MuJoCo
  preset for MuJoCo envs, the defaults otherwise; ``--cg-iters`` overrides), per env step of its
  batch (the ``update_seconds`` of the updates' records). The critic fit is left out: it runs in a
  child process on the second core while the next batch is collected. (Results written before
  2026-12-02 also hold the Fisher-vector products' share of the update, timed by wrapping the
  FVP; docs/performance.md keeps those numbers. Nothing is wrapped now.)

It prints the best ratio each floor allows: raw / (raw + costs).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from throughput import _raw  # type: ignore[import-not-found]

from trustpg import TRPO
from trustpg.accel import fast_actor
from trustpg.config.presets import PRESETS, preset_overrides
from trustpg.io.manifest import provenance

RESULTS = Path(__file__).resolve().parent / "results"


def _actor_us(actor: fast_actor.NumpyActor, obs: np.ndarray, gen: torch.Generator,
              vec_steps: int) -> tuple[float, float]:  # fmt: skip
    n = obs.shape[0]
    t = time.perf_counter()
    for _ in range(vec_steps):
        actor.outputs(obs)
    fwd = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(vec_steps):
        actor.sample(obs, gen)
    smp = time.perf_counter() - t
    return fwd * 1e6 / (vec_steps * n), smp * 1e6 / (vec_steps * n)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--env", default="CartPole-v1")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--vec-steps", type=int, default=2048)
    p.add_argument("--updates", type=int, default=10, help="updates timed per repeat")
    p.add_argument("--cg-iters", type=int, default=None, help="default: the config's")
    args = p.parse_args()
    torch.set_num_threads(1)
    config = preset_overrides("mujoco", args.env) if args.env in PRESETS["mujoco"] else {}
    if args.cg_iters is not None:
        config["cg_iters"] = args.cg_iters
    agent = TRPO(args.env, seed=0, progress=False, eval_episodes=0, **config)
    c = agent.config
    agent.learn(c.batch_size)  # warm-up: envs, critic worker, first update
    n = c.num_envs
    actor = fast_actor.NumpyActor(agent.policy.mlp_spec())  # type: ignore[operator]
    obs_dim = int(np.prod(agent.observation_space.shape))
    obs = np.random.default_rng(0).standard_normal((n, obs_dim)).astype(np.float32)
    gen = torch.Generator().manual_seed(0)
    totals: dict[str, float] = {}

    def add(record: Mapping[str, Any]) -> None:
        totals["update"] = totals.get("update", 0.0) + float(record["update_seconds"])

    rows: dict[str, list[float]] = {"raw": [], "forward": [], "sampling": [], "update": []}
    train_steps = args.updates * c.batch_size
    for _ in range(args.repeats):
        rows["raw"].append(1e6 / _raw(args.env, n, args.vec_steps * n, "sync", c.env_kwargs_dict()))
        fwd, smp = _actor_us(actor, obs, gen, args.vec_steps)
        rows["forward"].append(fwd)
        rows["sampling"].append(smp)
        totals.clear()
        agent.learn(train_steps, callback=add)  # whole batches: every trained step in one update
        rows["update"].append(totals["update"] * 1e6 / train_steps)
    agent.close()
    med = {k: statistics.median(v) for k, v in rows.items()}
    raw = med["raw"]
    ceilings = {
        "forward only": raw / (raw + med["forward"]),
        "update only": raw / (raw + med["update"]),
        "sampling + update": raw / (raw + med["sampling"] + med["update"]),
    }
    print(f"{args.env}, {n} envs, batch {c.batch_size}, {c.cg_iters} CG iterations, "
          f"medians of {args.repeats}, µs per env step:")  # fmt: skip
    for k, v in med.items():
        print(f"  {k:9s} {v:7.2f}")
    print(f"  budget for everything but the simulator at 0.8x raw: {0.25 * raw:.2f}")
    for k, v in ceilings.items():
        print(f"  best ratio to raw with {k}: {v:.2f}")
    RESULTS.mkdir(exist_ok=True)
    suffix = f"_cg{args.cg_iters}" if args.cg_iters is not None else ""
    out = RESULTS / f"budget_{args.env}{suffix}.json"
    command = f"python benchmarks/budget.py --env {args.env} --repeats {args.repeats}" + (
        f" --cg-iters {args.cg_iters}" if args.cg_iters is not None else ""
    )
    out.write_text(json.dumps({"command": command, "provenance": provenance(),
                               "num_envs": n, "batch": c.batch_size,
                               "cg_iters": c.cg_iters, "us_per_env_step": rows, "medians": med,
                               "budget_at_0.8x": 0.25 * raw, "best_ratio": ceilings},
                              indent=1))  # fmt: skip
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
