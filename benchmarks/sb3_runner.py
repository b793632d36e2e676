"""Run sb3-contrib's TRPO with the RL Zoo MuJoCo hyperparameters, logging like a trustpg run.

Used by benchmarks/mujoco_bench.py (``pip install -e .[bench]``). Writes RUN/metrics.csv (env_steps,
mean_return, wall_time, steps_per_sec), RUN/config.json and RUN/summary.json (deterministic
evaluation over 10 episodes with the frozen VecNormalize statistics).
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

# rl-baselines3-zoo hyperparams/trpo.yml, MuJoCo defaults (Hopper, HalfCheetah, Walker2d, Ant).
ZOO_MUJOCO = dict(
    n_steps=1024, batch_size=128, gamma=0.99, gae_lambda=0.95, sub_sampling_factor=1,
    cg_max_steps=25, cg_damping=0.1, n_critic_updates=20, learning_rate=1e-3,
)  # fmt: skip
ZOO_N_ENVS = 2
#: sb3-contrib's default TRPO trust region (RL Zoo's MuJoCo settings leave it).
SB3_TARGET_KL = 0.01


def trustpg_equivalent(target_kl: float, cg_damping: float, action_dim: int) -> dict[str, float]:
    """trustpg's ``max_kl`` and ``damping`` that give sb3-contrib's TRPO step on a Box action space.

    sb3-contrib averages its KL over the action dimensions as well as the states: for a diagonal
    Gaussian its ``kl_divergence`` returns the per-dimension terms ``[B, A]`` and TRPO takes their
    ``.mean()`` (tests/unit/test_peer_kl.py). Its KL, the Hessian behind its conjugate gradient and
    so its step scale are the summed KL's (trustpg's, the paper's) divided by A. Its
    ``target_kl`` = δ and ``cg_damping`` = λ are therefore δ·A and λ·A in trustpg's units; on Ant-v5
    (A = 8) RL Zoo's 0.01 and 0.1 are max_kl = 0.08 and damping = 0.8.
    """
    return {"max_kl": target_kl * action_dim, "damping": cg_damping * action_dim}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--env", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=1_000_000)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    run(args.env, args.seed, args.steps, args.out)


def run(env_id: str, seed: int, steps: int, out: Path, env_kwargs: dict[str, Any] | None = None) -> None:
    """Train sb3-contrib TRPO on ``env_id`` (made with ``env_kwargs``, for training and evaluation)
    and write ``out`` as a trustpg run directory would."""
    from trustpg.io.manifest import record_session

    args = argparse.Namespace(env=env_id, seed=seed, steps=steps, out=out)
    torch.set_num_threads(1)
    from sb3_contrib import TRPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    args.out.mkdir(parents=True, exist_ok=True)
    hp = dict(ZOO_MUJOCO)
    if args.env.startswith("Swimmer"):
        hp["gamma"] = 0.9999
    kwargs = dict(env_kwargs or {})
    env = VecNormalize(make_vec_env(args.env, n_envs=ZOO_N_ENVS, seed=args.seed, env_kwargs=kwargs))
    config: dict[str, Any] = {"env": args.env, "algo": "sb3-trpo", "seed": args.seed, "steps": args.steps,
              "n_envs": ZOO_N_ENVS, "env_kwargs": json.dumps(kwargs), **hp,
              "target_kl": SB3_TARGET_KL}  # fmt: skip
    shape = env.action_space.shape
    if shape is not None and len(shape) == 1 and env.action_space.dtype.kind == "f":  # a Box: a Gaussian
        config["trustpg_equivalent"] = trustpg_equivalent(SB3_TARGET_KL, hp["cg_damping"], shape[0])
    (args.out / "config.json").write_text(json.dumps(config, indent=2))
    import sb3_contrib

    manifest = record_session(args.out, config)
    manifest["peer"] = {"sb3_contrib": sb3_contrib.__version__}
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    f = open(args.out / "metrics.csv", "w", newline="")  # noqa: SIM115
    w = csv.writer(f)
    w.writerow(["update", "env_steps", "mean_return", "wall_time", "steps_per_sec"])
    t0 = time.perf_counter()

    class Log(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.updates = 0

        def _on_step(self) -> bool:
            return True

        def _on_rollout_end(self) -> None:
            self.updates += 1
            eps = [e["r"] for e in self.model.ep_info_buffer] if self.model.ep_info_buffer else []
            wall = time.perf_counter() - t0
            mean = float(np.mean(eps[-10:])) if eps else float("nan")
            w.writerow([self.updates, self.num_timesteps, mean, wall, self.num_timesteps / wall])
            f.flush()

    model = TRPO("MlpPolicy", env, seed=args.seed, verbose=0, target_kl=SB3_TARGET_KL, **hp)
    model.learn(args.steps, callback=Log())
    seconds = time.perf_counter() - t0
    f.close()
    env.training = False
    env.norm_reward = False
    returns = []
    import gymnasium as gym

    eval_env = gym.make(args.env, **kwargs)
    for ep in range(10):
        obs, _ = eval_env.reset(seed=10_000 + args.seed + ep)
        total, done = 0.0, False
        while not done:
            action, _ = model.predict(env.normalize_obs(obs[None]), deterministic=True)
            obs, r, term, trunc, _ = eval_env.step(action[0])
            total += float(r)
            done = term or trunc
        returns.append(total)
    summary = {"env_steps": args.steps, "train_seconds": seconds, "eval_mean": float(np.mean(returns)),
               "eval_std": float(np.std(returns)), "eval_returns": returns,
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # fmt: skip
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
