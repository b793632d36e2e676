"""Training throughput against the simulator's limit and against sb3-contrib, as ratios in one run.

    python benchmarks/throughput.py --repeats 3 --steps 20480            # main table
    python benchmarks/throughput.py --sweep --repeats 3 --steps 20480    # envs × sync/async on Hopper
    python benchmarks/throughput.py --fvp --repeats 7                    # FVP methods

Each measurement runs in a fresh subprocess with one torch thread; the kinds of measurement
are interleaved within each repeat so machine noise hits them alike; medians are reported.
Results are written to benchmarks/results/*.json and printed as Markdown.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
MUJOCO = ("Hopper-v5", "HalfCheetah-v5")


def _raw(env_id: str, num_envs: int, steps: int, vectorization: str) -> float:
    from trustpg.rollout import make_vec_env

    env = make_vec_env(env_id, num_envs, vectorization)
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


def _trustpg(env_id: str, num_envs: int, steps: int, vectorization: str) -> float:
    from trustpg import TRPO
    from trustpg.presets import preset_overrides

    preset = preset_overrides("mujoco", env_id) if env_id in MUJOCO else {}
    preset.update(num_envs=num_envs, vectorization=vectorization, progress=False)
    agent = TRPO(env_id, seed=0, **preset)
    t = time.perf_counter()
    agent.learn(steps, progress=False)
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


def _fvp(method: str, batch: int) -> float:
    import torch

    from trustpg.fisher import fisher_vector_product
    from trustpg.policies import Actor

    torch.manual_seed(0)
    policy = Actor(11, 3, "gaussian", (64, 64))
    obs = torch.randn(batch, 11)
    v = torch.randn(sum(p.numel() for p in policy.parameters()))
    fvp = fisher_vector_product(policy, obs, method=method)
    fvp(v)
    t = time.perf_counter()
    for _ in range(20):
        fvp(v)
    return (time.perf_counter() - t) / 20 * 1e3  # ms per product (setup excluded)


def measure(kind: str, *args: object) -> float:
    """Run one measurement in a fresh interpreter (no state shared between measurements)."""
    code = (
        "import sys, torch; torch.set_num_threads(1); "
        f"sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); "
        f"import throughput as t; print(t._{kind}(*{args!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main_table(repeats: int, steps: int) -> dict:
    cases = {
        "CartPole-v1": [("raw", ("CartPole-v1", 8, steps * 5, "sync")),
                        ("trustpg", ("CartPole-v1", 8, steps * 5, "sync")),
                        ("sb3-default", ("CartPole-v1", "default", steps))],
    }  # fmt: skip
    for env in MUJOCO:
        cases[env] = [("raw", (env, 8, steps, "sync")), ("trustpg", (env, 8, steps, "sync")),
                      ("sb3-default", (env, "default", steps)), ("sb3-zoo", (env, "zoo", steps))]  # fmt: skip
    results: dict = {env: {name: [] for name, _ in c} for env, c in cases.items()}
    for r in range(repeats):
        for env, c in cases.items():
            for name, args in c:
                kind = "sb3" if name.startswith("sb3") else name
                value = measure(kind, *args)
                results[env][name].append(value)
                print(f"repeat {r} {env} {name}: {value:,.0f} steps/s", flush=True)
    return results


def sweep(repeats: int, steps: int) -> dict:
    results: dict = {}
    for r in range(repeats):
        for vec in ("sync", "async"):
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
    args = p.parse_args()
    RESULTS.mkdir(exist_ok=True)
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
        (RESULTS / name).write_text(json.dumps({"command": command, "results": res}, indent=2) + "\n")
        print(f"wrote {plot_sweep()}")
    else:
        res = main_table(args.repeats, args.steps)
        for env, kinds in res.items():
            med = {k: statistics.median(v) for k, v in kinds.items()}
            ratios = ", ".join(f"{k}: {v:,.0f} ({med['trustpg'] / v:.2f}× trustpg/{k})"
                               for k, v in med.items() if k != "trustpg")  # fmt: skip
            print(f"{env}: trustpg {med['trustpg']:,.0f} steps/s; {ratios}")
        name = "throughput.json"
    (RESULTS / name).write_text(json.dumps({"command": command, "results": res}, indent=2) + "\n")


if __name__ == "__main__":
    main()


def plot_sweep(path: Path = RESULTS / "sweep.json", out: Path | None = None) -> Path:
    """Steps/s against the number of envs, sync and async, raw and trustpg (medians)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = json.loads(path.read_text())["results"]
    out = out or Path(__file__).resolve().parent.parent / "docs" / "figures" / "throughput_sweep.png"
    fig, ax = plt.subplots(figsize=(6, 4))
    for vec, style in (("sync", "-"), ("async", "--")):
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
