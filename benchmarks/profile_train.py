"""Where a TRPO update's time goes: cProfile of training with the MuJoCo preset.

    python benchmarks/profile_train.py --env Hopper-v5 --steps 20480

Prints the cumulative time of the main phases (env stepping, the rest of collection, the
policy update and its Fisher-vector products, critic fitting) after one warm-up update.
cProfile sees the main thread only: the critic fit runs on a background thread during
collection (``critic_overlap``), so what remains of it here is the wait for it to finish.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats

from trustpg import TRPO
from trustpg.config.presets import preset_overrides

PHASES = {
    "total (Trainer.iterate)": "trainer.py:{iterate}",
    "collection (Collector.collect)": "rollout.py:{collect}",
    "  env stepping (SyncVectorEnv.step)": "sync_vector_env.py:{step}",
    "  MuJoCo physics (mj_step)": "mj_step",
    "  action sampling (NumpyActor.sample)": "fast_actor.py:{sample}",
    "  waiting for the critic fit (CriticFitter.finish)": "value.py:{finish}",
    "policy update (rule.update)": "rules.py:{update}",
    "  Fisher-vector products": "fisher.py:{fvp}",
    "critic fitting in this thread (fit_value; 0 when it overlaps)": "value.py:{fit_value}",
}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--env", default="Hopper-v5")
    p.add_argument("--steps", type=int, default=20480)
    args = p.parse_args()
    agent = TRPO(args.env, seed=0, **preset_overrides("mujoco", args.env))
    agent.learn(2048, progress=False)  # warm-up
    prof = cProfile.Profile()
    prof.runcall(agent.learn, args.steps, progress=False)
    stats = pstats.Stats(prof)
    total = None
    print(f"| phase | seconds for {args.steps} steps | share |\n|---|---|---|")
    for label, pattern in PHASES.items():
        cum = sum(
            v[3] for k, v in stats.stats.items()  # type: ignore[attr-defined]
            if pattern in f"{k[0].rsplit('/', 1)[-1]}:{{{k[2]}}}" or pattern == k[2].split()[-1]
            or (pattern == "mj_step" and "mj_step" in k[2])
        )  # fmt: skip
        total = total or cum
        print(f"| {label} | {cum:.2f} | {cum / total:.0%} |")


if __name__ == "__main__":
    main()
