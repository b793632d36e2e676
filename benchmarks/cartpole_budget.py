"""How close to raw env stepping an on-policy learner can get on a cheap env (CartPole-v1).

    python benchmarks/cartpole_budget.py --repeats 5      # -> benchmarks/results/cartpole_budget.json

The performance issue asks for training throughput >= 0.8x raw random-action stepping of the
same vector env. That leaves 0.25x raw step time for everything that is not the simulator. This
script measures, in µs per env step (medians of interleaved repeats, one process, 1 torch
thread), the parts no TRPO learner can skip and compares them with that budget:

- raw: random-action stepping of trustpg's SyncVectorEnv (8 envs, as trustpg trains);
- forward: one bare forward pass of the default 64-64 tanh policy per vector step in NumPy
  (no observation normalisation, no sampling): the least any learner that runs a policy
  network on every step pays;
- sampling: trustpg's NumPy sampler per vector step (forward + draw);
- update: trustpg's TRPO policy update (default CartPole config: 8 x 256 steps per update,
  10 CG iterations), per env step of its batch. The critic fit is left out: it runs in a child
  process on the second core while the next batch is collected.

It prints the best ratio each floor allows: raw / (raw + costs).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from phases import _timed  # type: ignore[import-not-found]  # benchmarks/phases.py, same directory

from trustpg import TRPO, fast_actor, steps
from trustpg.rollout import make_vec_env

OUT = Path(__file__).resolve().parent / "results" / "cartpole_budget.json"


def _raw_us(num_envs: int, vec_steps: int) -> float:
    env = make_vec_env("CartPole-v1", num_envs)
    env.reset(seed=0)
    env.action_space.seed(0)
    actions = [env.action_space.sample() for _ in range(256)]
    t = time.perf_counter()
    for i in range(vec_steps):
        env.step(actions[i % 256])
    dt = time.perf_counter() - t
    env.close()
    return dt * 1e6 / (vec_steps * num_envs)


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
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--vec-steps", type=int, default=4096)
    p.add_argument("--train-steps", type=int, default=8 * 256 * 10)
    args = p.parse_args()
    agent = TRPO("CartPole-v1", seed=0, progress=False, eval_episodes=0)
    agent.learn(8 * 256)  # warm-up: envs, critic worker, first update
    n = agent.config.num_envs
    if args.train_steps % agent.config.batch_size:
        p.error(f"--train-steps must be a multiple of the batch ({agent.config.batch_size})")
    actor = fast_actor.NumpyActor(agent.trainer.actor)
    obs = np.random.default_rng(0).standard_normal((n, 4)).astype(np.float32)
    gen = torch.Generator().manual_seed(0)
    totals: dict[str, float] = {}
    _timed(steps.TRPO, "update", "update", totals)
    rows: dict[str, list[float]] = {"raw": [], "forward": [], "sampling": [], "update": []}
    for _ in range(args.repeats):
        rows["raw"].append(_raw_us(n, args.vec_steps))
        fwd, smp = _actor_us(actor, obs, gen, args.vec_steps)
        rows["forward"].append(fwd)
        rows["sampling"].append(smp)
        totals.clear()
        agent.learn(args.train_steps)  # whole batches, so every trained step was in one update
        rows["update"].append(totals["update"] * 1e6 / args.train_steps)
    agent.close()
    med = {k: statistics.median(v) for k, v in rows.items()}
    raw = med["raw"]
    ceilings = {
        "forward only": raw / (raw + med["forward"]),
        "sampling + update": raw / (raw + med["sampling"] + med["update"]),
    }
    print(f"CartPole-v1, {n} envs, medians of {args.repeats}, µs per env step:")
    for k, v in med.items():
        print(f"  {k:9s} {v:7.2f}")
    print(f"  budget for everything but the simulator at 0.8x raw: {0.25 * raw:.2f}")
    for k, v in ceilings.items():
        print(f"  best ratio to raw with {k}: {v:.2f}")
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps({"command": "python benchmarks/cartpole_budget.py "
                               f"--repeats {args.repeats}", "num_envs": n, "us_per_env_step": rows,
                               "medians": med, "budget_at_0.8x": 0.25 * raw, "best_ratio": ceilings},
                              indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
