"""How much does work on the second core slow the environment stepping on the first?

    python benchmarks/contention.py --env Hopper-v5 --num-envs 8 --repeats 3

Steps a Gymnasium SyncVectorEnv with random actions (the raw limit of benchmarks/throughput.py)
alone, then while something else runs: a thread multiplying 512×512 matrices (PyTorch releases
the GIL, so this is pure CPU contention), a thread fitting the critic as trustpg does during
collection, and a separate process multiplying matrices (no GIL at all). If the two CPUs were
independent cores, the GIL-free cases would leave the stepping rate unchanged. Prints µs per env
step (median of the repeats) and writes benchmarks/results/contention.json. No other heavy process
should run meanwhile (docs/performance.md, "Why overlapping does not halve the cost").
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

from trustpg.core.optim import Adam
from trustpg.io.manifest import provenance
from trustpg.nets.policies import Critic
from trustpg.sampling.rollout import make_vec_env
from trustpg.train.value import fit_value

OUT = Path(__file__).resolve().parent / "results" / "contention.json"


def _matmul_until(stop: Callable[[], bool]) -> None:
    torch.set_num_threads(1)
    a = torch.randn(512, 512)
    while not stop():
        a @ a


def _critic_until(stop: Callable[[], bool]) -> None:
    obs, ret = torch.randn(2048, 11), torch.randn(2048)
    critic = Critic(11)
    opt, gen = Adam(critic.parameters()), torch.Generator().manual_seed(0)
    while not stop():
        fit_value(critic, opt, obs, ret, epochs=1, minibatch_size=128, generator=gen)


def _process_matmul(flag: mp.synchronize.Event) -> None:  # type: ignore[name-defined]
    _matmul_until(flag.is_set)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--env", default="Hopper-v5")
    p.add_argument("--num-envs", type=int, default=8)
    p.add_argument("--vector-steps", type=int, default=2560)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(1)
    env = make_vec_env(args.env, args.num_envs)
    env.reset(seed=0)
    env.action_space.seed(0)
    actions = [env.action_space.sample() for _ in range(256)]

    def stepping() -> float:
        t = time.perf_counter()
        for i in range(args.vector_steps):
            env.step(actions[i % 256])
        return (time.perf_counter() - t) / (args.vector_steps * args.num_envs) * 1e6

    def with_thread(target: Callable[[Callable[[], bool]], None]) -> float:
        done = threading.Event()
        th = threading.Thread(target=target, args=(done.is_set,))
        th.start()
        time.sleep(0.2)
        try:
            return stepping()
        finally:
            done.set()
            th.join()

    def with_process() -> float:
        done = mp.get_context("spawn").Event()
        proc = mp.get_context("spawn").Process(target=_process_matmul, args=(done,))
        proc.start()
        time.sleep(3.0)  # let it import torch and start multiplying
        try:
            return stepping()
        finally:
            done.set()
            proc.join()

    cases: dict[str, Callable[[], float]] = {
        "alone": stepping,
        "thread: 512x512 matmul (GIL released)": lambda: with_thread(_matmul_until),
        "thread: trustpg critic fit": lambda: with_thread(_critic_until),
        "process: 512x512 matmul": with_process,
    }
    stepping()  # warm-up
    results = {name: statistics.median(f() for _ in range(args.repeats)) for name, f in cases.items()}
    alone = results["alone"]
    print(f"| {args.env}, {args.num_envs} envs, random actions | µs per env step | vs alone |")
    print("|---|---|---|")
    for name, us in results.items():
        print(f"| {name} | {us:.1f} | {us / alone:.2f}× |")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    record = {"command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "env": args.env,
              "num_envs": args.num_envs, "repeats": args.repeats, "us_per_step": results,
              "provenance": provenance()}  # fmt: skip
    OUT.write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
