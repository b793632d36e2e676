"""What does ``step_timeout`` cost per step? (issue 18, trustpg.envs.watchdog)

    python benchmarks/step_timeout.py [--env Hopper-v5] [--num-envs 8] [--rollouts 30]

1. The added work alone: ``TimedVectorEnv.step`` around a no-op vector env, with and without a
   limit, against calling the no-op directly; and, for comparison, arming and disarming
   ``setitimer`` around every step (the design not taken). ns per vector step, best of 5 timeit
   runs of 10⁶ calls.
2. End to end: ``Collector.collect`` of a sync vector env, 256 steps per rollout, with
   ``step_timeout=0`` and ``60``, interleaved; µs of CPU time (``time.process_time``, less
   sensitive to other jobs than wall time) per vector step, medians. Differences below ~1 % are
   noise on a shared machine; part 1 is the number to trust.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import time
import timeit

import gymnasium as gym
import numpy as np

from trustpg.envs.watchdog import TimedVectorEnv
from trustpg.nets.policies import Critic, make_actor
from trustpg.sampling.rollout import Collector, make_vec_env


class _NoOp:
    """A vector env whose step does nothing (only ``step`` is called)."""

    num_envs = 8
    unwrapped = None

    def step(self, actions: object) -> object:
        return actions


def added_work(calls: int = 1_000_000) -> dict[str, float]:
    null = _NoOp()
    plain, timed = TimedVectorEnv(null, 0.0), TimedVectorEnv(null, 60.0)  # type: ignore[arg-type]

    def best(fn: object) -> float:
        return min(timeit.repeat(fn, number=calls, repeat=5)) / calls * 1e9  # type: ignore[arg-type]

    with timed.guard():
        with_limit = best(lambda: timed.step(0))
    setitimer_pair = best(
        lambda: (signal.setitimer(signal.ITIMER_REAL, 60.0), signal.setitimer(signal.ITIMER_REAL, 0))
    )
    return {
        "no-op step": best(lambda: null.step(0)),
        "step_timeout=0": best(lambda: plain.step(0)),
        "step_timeout=60": with_limit,
        "setitimer arm+disarm per step": setitimer_pair,
    }


def end_to_end(env_id: str, num_envs: int, rollouts: int) -> dict[float, float]:
    collectors = {t: Collector(make_vec_env(env_id, num_envs), 0, True, 10.0, False, 0.99, step_timeout=t)
                  for t in (0.0, 60.0)}  # fmt: skip
    env = collectors[0.0].env
    actor = make_actor(env.single_observation_space, env.single_action_space, (64, 64), "tanh", 0.0)
    critic = Critic(int(np.prod(env.single_observation_space.shape)))
    times: dict[float, list[float]] = {t: [] for t in collectors}
    for col in collectors.values():
        col.collect(actor, critic, 64)  # warm-up
    for i in range(rollouts):
        for t, col in sorted(collectors.items(), reverse=i % 2 == 1):  # alternate the order
            t0 = time.process_time()
            col.collect(actor, critic, 256)
            times[t].append((time.process_time() - t0) / 256 * 1e6)
    for col in collectors.values():
        col.close()
    return {t: statistics.median(v) for t, v in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--env", default="Hopper-v5")
    p.add_argument("--num-envs", type=int, default=8)
    p.add_argument("--rollouts", type=int, default=30)
    args = p.parse_args()
    for name, ns in added_work().items():
        print(f"{name:32s} {ns:7.0f} ns per vector step")
    gym.logger.min_level = 40
    med = end_to_end(args.env, args.num_envs, args.rollouts)
    print(f"{args.env} x{args.num_envs} sync, collect: {med[0.0]:.1f} µs per vector step without a limit, "
          f"{med[60.0]:.1f} with step_timeout=60 ({(med[60.0] / med[0.0] - 1) * 100:+.2f} %)")  # fmt: skip


if __name__ == "__main__":
    main()
