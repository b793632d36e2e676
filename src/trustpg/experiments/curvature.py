"""Answering the seed's limitation of NPG ("computing the Fisher information matrix; costly to
invert"): TRPO with each curvature back end, and with mean vs max KL as the constraint.

Per (env, variant, seed) one training run in ``OUT/ENV/VARIANT/sSEED`` (``metrics.csv``,
``config.json``, ``summary.json`` and ``eval.json``: the deterministic return of the final policy
over 10 episodes). A finished run (``eval.json`` present) is not trained again, so the experiment
can be stopped and rerun, and run piecewise (``--envs``, ``--variants``, ``--seeds``). Then, from
every finished run: ``results.md``/``results.csv`` (final return, cost of the direction solve and
its ratio to cg's, angle to the exact natural gradient, KLs, skipped updates) and figures
(learning curves, solve seconds). ``collect ms`` (the median rollout time per iteration, the same
work for every back end) shows the speed of the machine a row's runs had: timings of rows whose
runs ran on different machines or at different loads are not comparable, and the like-for-like
cost is ``benchmarks/curvature_cost.py``'s.

Run: ``trustpg experiment curvature --out bench-runs/curvature [--envs Hopper-v5,CartPole-v1]
[--variants cg,kfac] [--seeds 0,1,2] [--steps N]``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from trustpg.config.presets import preset_overrides
from trustpg.experiments._common import check_budget, final_and_auc, save_figure, write_csv

#: variant → TrainConfig overrides (TRPO throughout).
VARIANTS: dict[str, dict[str, Any]] = {
    "cg": {"curvature": "cg"},
    "kfac": {"curvature": "kfac"},
    # CG preconditioned by K-FAC, 5 iterations (the presets run 10-25 unpreconditioned); runs
    # before pcg_iters existed set cg_iters=5, which kfac-cg then used: the same configuration
    "kfac-cg": {"curvature": "kfac-cg", "pcg_iters": 5},
    "diagonal": {"curvature": "diagonal"},
    "empirical": {"curvature": "empirical"},
    "cg-maxkl": {"curvature": "cg", "kl": "max"},
    "kfac-maxkl": {"curvature": "kfac", "kl": "max"},
    "cg-reversekl": {"curvature": "cg", "kl": "reverse"},
    # how stale may K-FAC's running factors be? 0: the current batch only; default 0.9
    "kfac-decay0": {"curvature": "kfac", "kfac_decay": 0.0},
    "kfac-decay0.5": {"curvature": "kfac", "kfac_decay": 0.5},
}
#: env → (preset, steps of the full budget).
ENVS: dict[str, tuple[str, int]] = {
    "CartPole-v1": ("classic", 100_000),
    "Hopper-v5": ("mujoco", 1_000_000),
    "HalfCheetah-v5": ("mujoco", 1_000_000),
    "Walker2d-v5": ("mujoco", 1_000_000),
}
#: Settings the recorded runs were made with where the preset has moved on since (Hopper's preset
#: took 10 CG iterations until f86947e, 25 after; Walker2d's batch, δ, damping and γ changed after
#: fb2b2a7), so that a rerun repeats them.
PINNED: dict[str, dict[str, Any]] = {
    "Hopper-v5": {"cg_iters": 10},
    "Walker2d-v5": {"steps_per_env": 64, "max_kl": 0.01, "damping": 0.1, "gamma": 0.99},
}
SMOKE_STEPS = 1024
#: States of the batch for the angle to the exact natural gradient (off by default in training).
ANGLE_STATES = 1024
EVAL_EPISODES = 10


def run_config(env: str, variant: str) -> dict[str, Any]:
    """The overrides of ``variant``'s runs on ``env``: its preset, PINNED, then the variant's."""
    preset, _ = ENVS.get(env, ("classic", 0))
    return {**preset_overrides(preset, env), **PINNED.get(env, {}), **VARIANTS[variant]}


def run_one(out: Path, env: str, variant: str, seed: int, steps: int, smoke: bool) -> Path:
    """Train one run into ``out/env/variant/sSEED`` (unless it is finished) and evaluate it."""
    from trustpg import TRPO, Agent
    from trustpg.errors import TrainingFault
    from trustpg.io.rundir import checkpoint_file

    run = out / env / variant / f"s{seed}"
    if (run / "eval.json").is_file():
        return run
    config = run_config(env, variant)
    config.update(steps=steps, seed=seed, progress=False, tensorboard=False, eval_episodes=0)
    config.update(ng_angle_states=ANGLE_STATES)  # the diagnostic is what this experiment measures
    if smoke:
        config.update(num_envs=2, steps_per_env=64, ng_angle_states=64)
    source = _source()  # before training: the commit whose code this process runs
    stopped = ""
    if checkpoint_file(run).is_file():  # an interrupted run: continue it
        agent = Agent.load(checkpoint_file(run))
        remaining = max(steps - agent.num_timesteps, 0)
    else:
        agent = TRPO(env, **config)
        remaining = steps
    try:
        agent.learn(remaining, run_dir=run)
    except TrainingFault as e:  # too many skipped updates in a row: evaluate what it learnt
        stopped = str(e)
    mean, std, returns = agent.evaluate(1 if smoke else EVAL_EPISODES, seed=10_000 + seed)
    agent.close()
    record = {"mean": mean, "std": std, "returns": returns, "stopped": stopped, "source": source}
    (run / "eval.json").write_text(json.dumps(record))
    return run


def _env_dirs(out: Path) -> list[Path]:
    """``out/ENV`` for every env with runs (the layout of bench-runs/: suite/env/variant/seed)."""
    return sorted({p.parent.parent for p in out.glob("*/*/s*") if p.is_dir() and p.parent.name in VARIANTS})


def _source() -> dict[str, Any]:
    """The commit the run's code came from and whether the tracked files differed from it."""
    import subprocess

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], capture_output=True, text=True, cwd=Path(__file__).parent)
        return done.stdout.strip() if done.returncode == 0 else ""

    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "-uno"))}


def _value(row: dict[str, Any], key: str) -> float:
    """A logged column, or ``surrogate_gain``: what the accepted step improved the surrogate by."""
    if key == "surrogate_gain":
        return float(row["surrogate_after"]) - float(row["surrogate_before"])
    return float(row[key])


def _finals(variant_dir: Path) -> dict[int, float]:
    """seed → deterministic final return of the finished runs in ``variant_dir``."""
    out = {}
    for p in sorted(variant_dir.glob("s*"), key=lambda p: int(p.name[1:])):
        if (p / "eval.json").is_file():
            out[int(p.name[1:])] = float(json.loads((p / "eval.json").read_text())["mean"])
    return out


def _ratio(variant: list[float], cg: list[float]) -> float:
    """The variant's mean over cg's mean, on the seeds both have (nan without any)."""
    return float(np.mean(variant) / np.mean(cg)) if cg else math.nan


def docs_table(table: list[dict[str, Any]]) -> str:
    """The table docs/theory.md §9 copies (``results.md``): per env and variant, the final return
    with the seeds it comes from, its ratio to cg on the same seeds, and the cost and angle medians."""
    head = (
        "| env | variant | final return, mean ± std [per seed] | ÷ cg, same seeds | AUC | solve ms (÷ cg) "
        "| update ms (with the angle) | collect ms | ng_angle | grad_angle | surrogate gain | mean KL "
        "| max KL | backtracks | skipped |"
    )
    lines = [head, "|" + "---|" * 15]
    for r in table:
        ids, vals = r["seed_ids"].split(), r["per_seed"].split()
        per = ", ".join(f"s{i}: {int(v):,}" for i, v in zip(ids, vals))
        spread = (
            f"{r['final_return']:,.0f} ± {r['final_std']:,.0f}"
            if r["seeds"] > 1
            else f"{r['final_return']:,.0f}"
        )
        ratio = (
            "–"
            if r["variant"] == "cg" or math.isnan(r["vs_cg_same_seeds"])
            else f"{r['vs_cg_same_seeds']:.0%}"
        )
        angle = "–" if math.isnan(r["ng_angle"]) else f"{r['ng_angle']:.1f}°"
        lines.append(
            f"| {r['env']} | {r['variant']} | {spread} [{per}] | {ratio} | {r['train_auc']:,.0f} "
            f"| {1e3 * r['solve_s']:.1f} ({r['solve_vs_cg']:.2f}) | {1e3 * r['update_s']:.1f} "
            f"| {1e3 * r['collect_s']:.1f} | {angle} "
            f"| {r['grad_angle']:.1f}° | {r['surrogate_gain']:.4f} | {r['mean_kl']:.4f} | {r['max_kl']:.4f} "
            f"| {r['backtracks']:.0f} | {r['skipped']:.1%} |"
        )
    return "\n".join(lines) + "\n"


def _metrics(run: Path) -> list[dict[str, Any]]:
    """The run's metrics.csv, or metrics.csv.gz once compressed for the repository."""
    from trustpg.io.logger import read_metrics

    plain = run / "metrics.csv"
    return read_metrics(plain if plain.is_file() else run / "metrics.csv.gz")


def _auc(run: Path) -> float:
    """Mean training return over the run's updates (area under the learning curve / steps)."""
    returns = [float(r["mean_return"]) for r in _metrics(run)]
    return final_and_auc(returns)[1]


def _median(rows: list[dict[str, Any]], key: str) -> float:
    v = np.array([_value(r, key) for r in rows if not r["skipped"]], dtype=float)
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else math.nan


def summarize(out: Path) -> list[dict[str, Any]]:
    """One row per (env, variant) over its finished seeds."""

    table = []
    for env_dir in _env_dirs(out):
        cg_solve, cg_evals = math.nan, _finals(env_dir / "cg")
        for variant in VARIANTS:
            runs = sorted(p for p in (env_dir / variant).glob("s*") if (p / "eval.json").is_file())
            if not runs:
                continue
            finals = _finals(env_dir / variant)
            evals = list(finals.values())
            rows = [r for p in runs for r in _metrics(p)]
            solve = _median(rows, "solve_seconds")
            if variant == "cg":
                cg_solve = solve
            both = sorted(set(finals) & set(cg_evals))
            table.append({
                "env": env_dir.name, "variant": variant, "seeds": len(runs),
                "env_steps": int(max(float(r["env_steps"]) for r in rows)),
                "final_return": float(np.mean(evals)), "final_std": float(np.std(evals)),
                "per_seed": " ".join(f"{e:.0f}" for e in evals),
                "seed_ids": " ".join(str(k) for k in finals),
                "vs_cg_same_seeds": _ratio([finals[k] for k in both], [cg_evals[k] for k in both]),
                "train_auc": float(np.mean([_auc(p) for p in runs])),
                "solve_s": solve, "solve_vs_cg": solve / cg_solve if cg_solve > 0 else math.nan,
                "update_s": _median(rows, "update_seconds"),
                "collect_s": _median(rows, "collect_seconds"),
                "ng_angle": _median(rows, "ng_angle"), "grad_angle": _median(rows, "grad_angle"),
                "mean_kl": _median(rows, "measured_kl"), "max_kl": _median(rows, "kl_max"),
                "reverse_kl": _median(rows, "kl_reverse"), "backtracks": _median(rows, "backtracks"),
                "surrogate_gain": _median(rows, "surrogate_gain"),
                "skipped": float(np.mean([float(r["skipped"]) for r in rows])),
            })  # fmt: skip
    return table


def _curves(out: Path) -> list[Path]:

    paths = []
    for env_dir in _env_dirs(out):
        fig, ax = plt.subplots(figsize=(6, 4))
        for variant in VARIANTS:
            runs = sorted(p for p in (env_dir / variant).glob("s*") if (p / "eval.json").is_file())
            for i, p in enumerate(runs):
                rows = _metrics(p)
                x = [float(r["env_steps"]) for r in rows]
                y = np.array([float(r["mean_return"]) for r in rows], dtype=float)
                ok = np.isfinite(y)
                color = f"C{list(VARIANTS).index(variant) % 10}"
                ax.plot(np.array(x)[ok], y[ok], color=color, alpha=0.6, label=variant if i == 0 else None)
        ax.set_title(f"{env_dir.name}: TRPO by curvature back end")
        ax.set_xlabel("environment steps")
        ax.set_ylabel("training episode return")
        ax.legend(fontsize=8)
        paths.append(save_figure(fig, out / f"curves_{env_dir.name}.png"))
    return paths


def run(
    out: Path, budget: str = "full", *, envs: list[str] | None = None,
    variants: list[str] | None = None, seeds: list[int] | None = None, steps: int | None = None,
) -> list[Path]:  # fmt: skip
    """Train the runs not yet finished, then write the tables and figures from all finished runs."""
    smoke = check_budget(budget) == "smoke"
    envs = envs or (["CartPole-v1"] if smoke else list(ENVS))
    variants = variants or (["cg", "kfac"] if smoke else list(VARIANTS))
    seeds = seeds if seeds is not None else ([0] if smoke else [0, 1, 2])
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
    for env in envs:
        n = steps if steps is not None else (SMOKE_STEPS if smoke else ENVS.get(env, ("", 100_000))[1])
        for variant in variants:
            for seed in seeds:
                run_one(out, env, variant, seed, n, smoke)
    table = summarize(out)
    paths = [write_csv(table, out / "results.csv")]
    (out / "results.md").write_text(docs_table(table))
    paths.append(out / "results.md")
    return paths + _curves(out)
