"""Training throughput against the simulator's limit, sb3-contrib and Tianshou, as ratios in one run.

    python benchmarks/throughput.py --repeats 3 --steps 20480            # main table
    python benchmarks/throughput.py --sweep --repeats 3 --steps 20480    # envs × sync/async/envpool, Hopper
    python benchmarks/throughput.py --fvp --repeats 7                    # FVP methods
    python benchmarks/throughput.py --envs Hopper-v5 --cg-iters 10       # trustpg with 10 CG iterations

Each measurement runs in a fresh subprocess with one torch thread ("trustpg-2threads": the same
run with its policy update on two threads, ``update_threads=2``); the kinds of measurement
are interleaved within each repeat so machine noise hits them alike; medians are reported.
Results are written to benchmarks/results/*.json and printed as Markdown.

When EnvPool is importable (pip install 'trustpg[envpool]'), the MuJoCo rows also get
"raw-envpool" and "trustpg-envpool" (the same measurements with vectorization="envpool") and the
sweep an envpool series.

Tianshou's TRPO is measured with its own interpreter (``--tianshou-python``, default
/work/tianshou-venv/bin/python; skipped with a note if absent), a venv layered on the system
packages so that installing it changes nothing outside the venv:

    python -m venv --system-site-packages /work/tianshou-venv
    /work/tianshou-venv/bin/pip install tianshou==2.0.1     # not its mujoco extra
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
MUJOCO = ("Hopper-v5", "HalfCheetah-v5")
TIANSHOU_PYTHON = Path("/work/tianshou-venv/bin/python")


def _has_envpool() -> bool:
    return importlib.util.find_spec("envpool") is not None


def _raw(env_id: str, num_envs: int, steps: int, vectorization: str, env_kwargs: dict | None = None) -> float:
    """Steps/s of random-action stepping of trustpg's vector env: the simulator's limit (also used by
    benchmarks/phases.py and benchmarks/budget.py)."""
    from trustpg.sampling.rollout import make_vec_env

    env = make_vec_env(env_id, num_envs, vectorization, env_kwargs=env_kwargs)
    env.reset(seed=0)
    env.action_space.seed(0)
    actions = [env.action_space.sample() for _ in range(64)]
    n = steps // num_envs
    t = time.perf_counter()
    for i in range(n):
        env.step(actions[i % 64])
    dt = time.perf_counter() - t
    env.close()
    return n * num_envs / dt


def _trustpg(
    env_id: str, num_envs: int, steps: int, vectorization: str, update_threads: int = 1,
    cg_iters: int | None = None,
) -> float:  # fmt: skip
    from trustpg import TRPO
    from trustpg.config.presets import preset_overrides

    preset = preset_overrides("mujoco", env_id) if env_id in MUJOCO else {}
    preset.update(num_envs=num_envs, vectorization=vectorization, update_threads=update_threads,
                  progress=False)  # fmt: skip
    if cg_iters is not None:  # --cg-iters: instead of the preset's (or the default's) count
        preset["cg_iters"] = cg_iters
    if vectorization == "envpool":
        import envpool  # noqa: F401  (~1 s once per process, as gymnasium's imports above: not timed)
    agent = TRPO(env_id, seed=0, **preset)
    agent.prepare()  # envs made and the critic worker started before timing, as for sb3
    t = time.perf_counter()
    agent.learn(steps, progress=False)  # returns after the last batch's critic fit, which counts too
    dt = time.perf_counter() - t
    done = agent.num_timesteps
    agent.close()
    return done / dt


def _sb3(env_id: str, setting: str, steps: int) -> float:
    import torch
    from sb3_contrib import TRPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    torch.set_num_threads(1)
    if setting == "default":
        env = make_vec_env(env_id, n_envs=1, seed=0)
        model = TRPO("MlpPolicy", env, seed=0)
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from sb3_runner import ZOO_MUJOCO, ZOO_N_ENVS

        env = VecNormalize(make_vec_env(env_id, n_envs=ZOO_N_ENVS, seed=0))
        model = TRPO("MlpPolicy", env, seed=0, **ZOO_MUJOCO)
    t = time.perf_counter()
    model.learn(steps)
    return model.num_timesteps / (time.perf_counter() - t)


def _tianshou(env_id: str, steps: int) -> float:
    """Tianshou 2.0 TRPO in its fastest setting: 16 envs stepped in-process (DummyVectorEnv), with
    the hyperparameters of its examples/mujoco/mujoco_trpo.py (64-64 tanh, 1024 steps per collect,
    one full-batch update, 20 critic steps, lr 1e-3 decaying linearly, γ .99, λ .95, max KL .01,
    10 backtracks × 0.8, obs normalisation, return scaling, advantage normalisation, log σ -0.5).
    CartPole uses the same, with a categorical policy. No test envs, no logger, no progress bar."""
    import warnings

    import gymnasium as gym
    import numpy as np
    import torch
    from tianshou.algorithm import TRPO
    from tianshou.algorithm.modelfree.reinforce import DiscreteActorPolicy, ProbabilisticActorPolicy
    from tianshou.algorithm.optim import AdamOptimizerFactory, LRSchedulerFactoryLinear
    from tianshou.data import Collector, VectorReplayBuffer
    from tianshou.env import DummyVectorEnv, VectorEnvNormObs
    from tianshou.trainer import OnPolicyTrainerParams
    from tianshou.utils.net.common import Net
    from tianshou.utils.net.continuous import ContinuousActorProbabilistic, ContinuousCritic
    from tianshou.utils.net.discrete import DiscreteActor, DiscreteCritic
    from torch.distributions import Independent, Normal

    warnings.filterwarnings("ignore")  # per-update line-search notes and a spurious max_action one
    torch.set_num_threads(1)
    np.random.seed(0)
    torch.manual_seed(0)
    num_envs, per_collect = 16, 1024
    env = gym.make(env_id)
    envs = VectorEnvNormObs(DummyVectorEnv([lambda: gym.make(env_id) for _ in range(num_envs)]))
    envs.seed(0)

    def body() -> Net:
        return Net(state_shape=env.observation_space.shape, hidden_sizes=(64, 64), activation=torch.nn.Tanh)

    if isinstance(env.action_space, gym.spaces.Discrete):
        n = int(env.action_space.n)
        actor = DiscreteActor(preprocess_net=body(), action_shape=n, softmax_output=False)
        critic = DiscreteCritic(preprocess_net=body())
        policy = DiscreteActorPolicy(actor=actor, action_space=env.action_space)  # Categorical(logits)
        head = actor.last
    else:
        actor = ContinuousActorProbabilistic(
            preprocess_net=body(), action_shape=env.action_space.shape, unbounded=True
        )
        critic = ContinuousCritic(preprocess_net=body())
        torch.nn.init.constant_(actor.sigma_param, -0.5)
        policy = ProbabilisticActorPolicy(
            actor=actor, dist_fn=lambda loc_scale: Independent(Normal(*loc_scale), 1),
            action_space=env.action_space, action_scaling=True, action_bound_method="clip",
        )  # fmt: skip
        head = actor.mu
    for m in [*actor.modules(), *critic.modules()]:
        if isinstance(m, torch.nn.Linear):
            torch.nn.init.orthogonal_(m.weight, gain=np.sqrt(2))
            torch.nn.init.zeros_(m.bias)
    for m in head.modules():
        if isinstance(m, torch.nn.Linear):
            m.weight.data.mul_(0.01)
    optim = AdamOptimizerFactory(lr=1e-3)
    optim.with_lr_scheduler_factory(LRSchedulerFactoryLinear(1, steps, per_collect))
    algorithm = TRPO(
        policy=policy, critic=critic, optim=optim, gamma=0.99, gae_lambda=0.95, return_scaling=True,
        advantage_normalization=True, optim_critic_iters=20, max_kl=0.01, backtrack_coeff=0.8,
        max_backtracks=10,
    )  # fmt: skip
    collector = Collector(algorithm, envs, VectorReplayBuffer(4096, num_envs), exploration_noise=True)
    trainer = algorithm.create_trainer(OnPolicyTrainerParams(
        training_collector=collector, test_collector=None, logger=None, max_epochs=1,
        epoch_num_steps=steps, collection_step_num_env_steps=per_collect, update_step_num_repetitions=1,
        batch_size=None, verbose=False, show_progress=False,
    ))  # fmt: skip
    t = time.perf_counter()
    info = trainer.run()
    dt = time.perf_counter() - t
    envs.close()
    return info.train_step / dt


def _fvp(method: str, batch: int) -> float:
    import torch

    from trustpg.core.fisher import fisher_vector_product
    from trustpg.nets.policies import Actor

    torch.manual_seed(0)
    policy = Actor(11, 3, "gaussian", (64, 64))
    obs = torch.randn(batch, 11)
    v = torch.randn(sum(p.numel() for p in policy.parameters()))
    fvp = fisher_vector_product(policy, obs, method=method)  # as the trainer does
    fvp(v)
    t = time.perf_counter()
    for _ in range(20):
        fvp(v)
    return (time.perf_counter() - t) / 20 * 1e3  # ms per product (setup excluded)


def measure(kind: str, *args: object, python: str | os.PathLike = sys.executable) -> float:
    """Run one measurement in a fresh interpreter (no state shared between measurements)."""
    code = (
        "import sys, torch; torch.set_num_threads(1); "
        f"sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); "
        f"import throughput as t; print(t._{kind}(*{args!r}))"
    )
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"measure({kind!r}, *{args!r}) with {python} failed:\n{out.stderr[-3000:]}")
    return float(out.stdout.strip().splitlines()[-1])


def preset_envs(env_id: str) -> int:
    """The env count trustpg trains ``env_id`` with (its MuJoCo preset; the default config else)."""
    from trustpg.config.presets import preset_overrides
    from trustpg.config.train_config import TrainConfig

    if env_id in MUJOCO:
        return int(preset_overrides("mujoco", env_id).get("num_envs", TrainConfig().num_envs))
    return TrainConfig().num_envs


ALL_ENVS = ("CartPole-v1", *MUJOCO)


def main_table(
    repeats: int, steps: int, tianshou_python: Path | None = None, envs: tuple[str, ...] = ALL_ENVS,
    cg_iters: int | None = None,
) -> dict:  # fmt: skip
    """raw and trustpg use the env count of trustpg's preset for each env (same count for both);
    ``cg_iters`` replaces the CG iteration count of trustpg's preset (None: the preset's)."""
    cases: dict = {}
    for env in envs:
        n, k = preset_envs(env), (5 if env == "CartPole-v1" else 1)
        cases[env] = [("raw", (env, n, steps * k, "sync")),
                      ("trustpg", (env, n, steps * k, "sync", 1, cg_iters)),
                      ("trustpg-2threads", (env, n, steps * k, "sync", 2, cg_iters)),
                      ("sb3-default", (env, "default", steps))]  # fmt: skip
        if env in MUJOCO:
            cases[env].append(("sb3-zoo", (env, "zoo", steps)))
            if _has_envpool():
                cases[env] += [("raw-envpool", (env, n, steps, "envpool")),
                               ("trustpg-envpool", (env, n, steps, "envpool", 1, cg_iters))]  # fmt: skip
    if tianshou_python is not None:
        for env, c in cases.items():
            c.append(("tianshou", (env, steps * 5 if env == "CartPole-v1" else steps)))
    results: dict = {env: {name: [] for name, _ in c} for env, c in cases.items()}
    for r in range(repeats):
        for env, c in cases.items():
            for name, args in c:
                kind = name.split("-")[0]  # sb3-zoo -> sb3, raw-envpool -> raw, ...
                python = tianshou_python if name == "tianshou" else sys.executable
                value = measure(kind, *args, python=python)
                results[env][name].append(value)
                print(f"repeat {r} {env} {name}: {value:,.0f} steps/s", flush=True)
    return results


def sweep(repeats: int, steps: int) -> dict:
    results: dict = {}
    for r in range(repeats):
        for vec in ("sync", "async", *(("envpool",) if _has_envpool() else ())):
            for n in (1, 4, 8, 16):
                for kind in ("raw", "trustpg"):
                    value = measure(kind, "Hopper-v5", n, steps, vec)
                    results.setdefault(f"{vec}/{n}/{kind}", []).append(value)
                    print(f"repeat {r} {vec} n={n} {kind}: {value:,.0f} steps/s", flush=True)
    return results


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=20480)
    p.add_argument("--sweep", action="store_true")
    p.add_argument("--fvp", action="store_true")
    p.add_argument("--envs", nargs="+", default=list(ALL_ENVS), help="main table rows")
    p.add_argument("--cg-iters", type=int, default=None, help="trustpg's CG iterations (default: preset's)")
    p.add_argument(
        "--tianshou-python",
        type=Path,
        default=TIANSHOU_PYTHON if TIANSHOU_PYTHON.exists() else None,
        help="interpreter with tianshou==2.0.1 for the tianshou column (see the module docstring)",
    )
    args = p.parse_args()
    RESULTS.mkdir(exist_ok=True)
    from trustpg.io.manifest import provenance

    command = "python benchmarks/throughput.py " + " ".join(sys.argv[1:])
    if args.fvp:
        res: dict = {"analytic": [], "kl_hessian": []}
        for _ in range(args.repeats):
            for m in res:
                res[m].append(measure("fvp", m, 16384))
        med = {m: statistics.median(v) for m, v in res.items()}
        print(f"FVP ms/product (median of {args.repeats}): {med}; ratio analytic/kl_hessian "
              f"{med['analytic'] / med['kl_hessian']:.2f}")  # fmt: skip
        name = "fvp.json"
    elif args.sweep:
        res = sweep(args.repeats, args.steps)
        name = "sweep.json"
        record = {"command": command, "provenance": provenance(), "results": res}
        (RESULTS / name).write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {plot_sweep()}")
    else:
        if args.tianshou_python is None:
            print(f"note: no Tianshou interpreter ({TIANSHOU_PYTHON} absent, no --tianshou-python): "
                  "Tianshou is skipped; see the module docstring to create its venv")  # fmt: skip
        res = main_table(args.repeats, args.steps, args.tianshou_python, tuple(args.envs), args.cg_iters)
        for env, kinds in res.items():
            med = {k: statistics.median(v) for k, v in kinds.items()}
            ratios = ", ".join(f"{k}: {v:,.0f} ({med['trustpg'] / v:.2f}× trustpg/{k})"
                               for k, v in med.items() if k != "trustpg")  # fmt: skip
            print(f"{env}: trustpg {med['trustpg']:,.0f} steps/s; {ratios}")
            if "trustpg-envpool" in med:
                ep = med["trustpg-envpool"]
                print(f"{env} envpool: trustpg-envpool {ep:,.0f} steps/s = {ep / med['raw-envpool']:.2f}× "
                      f"raw-envpool, {ep / med['trustpg']:.2f}× trustpg (sync); raw-envpool/raw "
                      f"{med['raw-envpool'] / med['raw']:.2f}×")  # fmt: skip
        subset = tuple(args.envs) != ALL_ENVS
        name = "throughput_" + "_".join(args.envs) + ".json" if subset else "throughput.json"
        command += f"  # tianshou python: {args.tianshou_python}"
    record = {"command": command, "provenance": provenance(), "results": res}
    (RESULTS / name).write_text(json.dumps(record, indent=2) + "\n")


def plot_sweep(path: Path = RESULTS / "sweep.json", out: Path | None = None) -> Path:
    """Steps/s against the number of envs, sync, async (and envpool), raw and trustpg (medians)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = json.loads(path.read_text())["results"]
    out = out or Path(__file__).resolve().parent.parent / "docs" / "figures" / "throughput_sweep.png"
    fig, ax = plt.subplots(figsize=(6, 4))
    for vec, style in (("sync", "-"), ("async", "--"), ("envpool", ":")):
        for kind, color in (("raw", "tab:gray"), ("trustpg", "tab:blue")):
            ns = [n for n in (1, 4, 8, 16) if f"{vec}/{n}/{kind}" in res]
            ys = [statistics.median(res[f"{vec}/{n}/{kind}"]) for n in ns]
            ax.plot(ns, ys, style, color=color, marker="o", label=f"{kind}, {vec}")
    ax.set_xlabel("number of envs (Hopper-v5)")
    ax.set_ylabel("env steps / s (median)")
    ax.set_xscale("log", base=2)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


if __name__ == "__main__":
    main()
