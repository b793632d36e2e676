"""Specify a constraint, not a step size: sweep VPG α, NPG α and TRPO δ on tasks of different scales.

VPG (x = α g) and fixed-α NPG (x = α F⁻¹g, Kakade 2002) are swept over orders of magnitude, TRPO
(x = β F⁻¹g with β = sqrt(2δ / g̃ᵀFg̃) and a line search, Schulman et al. 2015) over a small range
of δ. The seed's claim: a step size means a different policy change on every task (and at every
point of training), a KL budget δ means the same thing everywhere, so one δ should be near-best on
every task while the best α moves. Scores: final return (mean of the last 10% of updates) and the
area under the learning curve (mean return over all updates), each averaged over seeds.

Run: ``trustpg experiment stepsize-vs-constraint --out DIR``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from trustpg.config.presets import preset_overrides
from trustpg.experiments._common import (
    HOPPER,
    check_budget,
    final_and_auc,
    markdown_table,
    save_figure,
    train_curve,
    write_csv,
)

#: The swept hyperparameter of each rule and its values (full budget).
SWEEPS: dict[str, tuple[str, tuple[float, ...]]] = {
    "vpg": ("vpg_lr", (0.01, 0.1, 1.0, 10.0)),
    "npg": ("npg_step_size", (0.01, 0.1, 1.0, 10.0)),
    "trpo": ("max_kl", (0.003, 0.01, 0.03)),
}
#: env → (config overrides, environment steps per run) for the full budget.
TASKS: dict[str, tuple[dict[str, Any], int]] = {
    "CartPole-v1": ({}, 49_152),
    "Pendulum-v1": (preset_overrides("classic", "Pendulum-v1"), 98_304),
    "Hopper-v5": (HOPPER, 40_960),
}
FULL_SEEDS = (0, 1)


def sweep_runs(
    tasks: dict[str, tuple[dict[str, Any], int]],
    sweeps: dict[str, tuple[str, tuple[float, ...]]],
    seeds: tuple[int, ...],
    **extra: Any,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Train every (env, rule, value, seed); return per-run summaries and all per-update rows."""
    runs, curves = [], []
    for env, (overrides, steps) in tasks.items():
        config = {k: v for k, v in overrides.items() if k != "steps"}
        for algo, (field, values) in sweeps.items():
            for value in values:
                for seed in seeds:
                    rows = train_curve(algo, env, steps, seed, **{**config, **extra, field: value})
                    rets = [r["mean_return"] for r in rows]
                    final, auc = final_and_auc(rets)
                    runs.append({"env": env, "algo": algo, "param": field, "value": value, "seed": seed,
                                 "env_steps": rows[-1]["env_steps"] if rows else 0, "final_return": final,
                                 "auc_return": auc,
                                 "stopped": rows[-1]["stopped"] if rows else 1})  # fmt: skip
                    curves += [{"env": env, "algo": algo, "value": value, "seed": seed, **r} for r in rows]
                    print(f"  {env} {algo} {field}={value:g} seed {seed}: final {final:.1f}", flush=True)
    return runs, curves


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Seed-mean final/AUC return per (env, algo, value), and its score normalised per env.

    score = (R − min R) / (max R − min R) over all settings of that env (1 = best setting found).
    """
    keys = sorted({(r["env"], r["algo"], r["value"]) for r in runs}, key=str)
    out = []
    for env, algo, value in keys:
        sel = [r for r in runs if (r["env"], r["algo"], r["value"]) == (env, algo, value)]
        out.append({"env": env, "algo": algo, "value": value, "seeds": len(sel),
                    "final_return": float(np.mean([r["final_return"] for r in sel])),
                    "final_std": float(np.std([r["final_return"] for r in sel])),
                    "auc_return": float(np.mean([r["auc_return"] for r in sel]))})  # fmt: skip
    for env in {r["env"] for r in out}:
        for col in ("final", "auc"):
            vals = [r[f"{col}_return"] for r in out if r["env"] == env]
            lo, hi = float(np.nanmin(vals)), float(np.nanmax(vals))
            for r in out:
                if r["env"] == env:
                    r[f"{col}_score"] = (r[f"{col}_return"] - lo) / (hi - lo) if hi > lo else 1.0
    return out


def best_settings(summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (env, algo): the value with the best final return, and the final score of TRPO δ = 0.01."""
    rows = []
    for env in sorted({r["env"] for r in summary}):
        for algo in SWEEPS:
            sel = [r for r in summary if r["env"] == env and r["algo"] == algo]
            if not sel:
                continue
            best = max(sel, key=lambda r: r["final_return"])
            rows.append({"env": env, "algo": algo, "best_value": best["value"],
                         "best_final_return": best["final_return"], "best_score": best["final_score"],
                         "scores_by_value": ", ".join(f"{r['value']:g}: {r['final_score']:.2f}"
                                                      for r in sel)})  # fmt: skip
    return rows


def _plot(summary: list[dict[str, Any]], out: Path, prefix: str) -> Path:
    algos = [a for a in SWEEPS if any(r["algo"] == a for r in summary)]
    fig, ax = plt.subplots(2, len(algos), figsize=(5 * len(algos), 8), squeeze=False)
    envs = sorted({r["env"] for r in summary})
    for j, algo in enumerate(algos):
        field = SWEEPS[algo][0]
        for k, col in enumerate(("final", "auc")):
            for i, env in enumerate(envs):
                sel = sorted((r for r in summary if r["env"] == env and r["algo"] == algo),
                             key=lambda r: r["value"])  # fmt: skip
                ax[k, j].plot([r["value"] for r in sel], [r[f"{col}_score"] for r in sel], "o-",
                              color=f"C{i}", lw=2, label=env)  # fmt: skip
            ax[k, j].set(xscale="log", ylim=(-0.05, 1.05), xlabel=f"{algo.upper()} {field}",
                         ylabel=f"{col} return, normalised per env",
                         title=f"{algo.upper()}: {col} return")  # fmt: skip
            values = sorted({r["value"] for r in summary if r["algo"] == algo})
            ax[k, j].set_xticks(values, [f"{v:g}" for v in values], minor=False)
            ax[k, j].minorticks_off()
            if algo == "trpo":
                ax[k, j].axvline(0.01, color="k", lw=0.8, ls=":")
            ax[k, j].legend(fontsize=8)
    return save_figure(fig, out / f"{prefix}.png")


def write_outputs(
    runs: list[dict[str, Any]], curves: list[dict[str, Any]], out: Path, prefix: str, note: str = ""
) -> list[Path]:
    """Figure, per-run / summary / per-update CSVs and the markdown table, named ``prefix*``."""
    summary = summarize(runs)
    out.mkdir(parents=True, exist_ok=True)
    md = out / f"{prefix}.md"
    steps = ", ".join(f"{env} {runs_[0]['env_steps']} steps" for env in sorted({r["env"] for r in runs})
                      for runs_ in [[r for r in runs if r["env"] == env]])  # fmt: skip
    md.write_text(
        f"{note}Seeds per setting: {len({r['seed'] for r in runs})}; {steps}. Score: final return "
        "(last 10% of updates) normalised per env to [0, 1] over all settings.\n\n"
        + markdown_table(best_settings(summary))
        + "\nAll settings:\n\n"
        + markdown_table(summary)
    )
    return [
        _plot(summary, out, prefix),
        write_csv(runs, out / f"{prefix}_runs.csv"),
        write_csv(summary, out / f"{prefix}.csv"),
        write_csv(curves, out / f"{prefix}_curves.csv"),
        md,
    ]


def run(out: Path, budget: str = "full") -> list[Path]:
    """Write the figure, per-run and summary CSVs, per-update curves and a markdown table."""
    if check_budget(budget) == "full":
        runs, curves = sweep_runs(TASKS, SWEEPS, FULL_SEEDS)
    else:
        smoke = {algo: (field, values[1:2]) for algo, (field, values) in SWEEPS.items()}
        runs, curves = sweep_runs({"CartPole-v1": ({}, 256)}, smoke, (0,), num_envs=2, steps_per_env=64)
    return write_outputs(runs, curves, out, "stepsize_vs_constraint")
