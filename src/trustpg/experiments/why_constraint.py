"""Why a constraint at all: large unconstrained natural steps versus TRPO.

The quadratic model KL ≈ ½xᵀFx and the linear model of J are only trusted near θ (the seed's
"value estimates can be noisy", "large policy changes might lead to catastrophic performance
drops"). NPG takes x = α F⁻¹g with a fixed α, or scaled so that ½xᵀFx = δ, and never checks the
step; TRPO scales to δ and then line-searches until the *measured* E_s[KL(π_old ‖ π_new)] ≤ δ and
the surrogate improves (Schulman et al. 2015, §6 and App. C). We record learning curves, the
measured KL of every update, and count catastrophic drops: updates after which the batch mean
return falls by more than half of its height above the task's worst possible return.

Run: ``trustpg experiment why-constraint --out DIR``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from trustpg.config.presets import preset_overrides
from trustpg.experiments._common import check_budget, markdown_table, save_figure, train_curve, write_csv

#: label → (algo, config): TRPO with its default δ, and natural steps without a line search.
CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "TRPO δ=0.01": ("trpo", {"max_kl": 0.01}),
    "NPG δ=0.01 (no line search)": ("npg", {"max_kl": 0.01}),
    "NPG δ=0.1 (no line search)": ("npg", {"max_kl": 0.1}),
    "NPG δ=1 (no line search)": ("npg", {"max_kl": 1.0}),
    "NPG α=3 (fixed)": ("npg", {"npg_step_size": 3.0}),
    "NPG α=10 (fixed)": ("npg", {"npg_step_size": 10.0}),
}
#: env → (config overrides, steps per run, worst possible return: the floor of the drop test).
#: Pendulum's reward is ≥ −(π² + 0.1·8² + 0.001·2²) = −16.27 per step, 200 steps per episode.
TASKS: dict[str, tuple[dict[str, Any], int, float]] = {
    "CartPole-v1": ({}, 61_440, 0.0),
    "Pendulum-v1": (preset_overrides("classic", "Pendulum-v1"), 81_920, -16.2736044 * 200),
}
FULL_SEEDS: tuple[int, ...] = (0, 1, 2)


def catastrophic_drops(returns: Sequence[float], floor: float = 0.0) -> int:
    """Number of t with R_{t+1} − floor < ½ (R_t − floor): the return lost more than half its height.

    With ``floor`` = 0 (CartPole) this is the plain "mean return fell by more than half".
    NaN entries (no finished episode) never count.
    """
    r = np.asarray(returns, dtype=float) - floor
    prev, nxt = r[:-1], r[1:]
    ok = np.isfinite(prev) & np.isfinite(nxt) & (prev > 0)
    return int(np.sum(ok & (nxt < 0.5 * prev)))


def runs(tasks: dict[str, tuple[dict[str, Any], int, float]], seeds: Sequence[int], **extra: Any
         ) -> list[dict[str, Any]]:  # fmt: skip
    """Every (env, config, seed): per-update rows labelled with env, config and seed."""
    rows = []
    for env, (overrides, steps, _) in tasks.items():
        base = {k: v for k, v in overrides.items() if k != "steps"}
        for label, (algo, config) in CONFIGS.items():
            for seed in seeds:
                curve = train_curve(algo, env, steps, seed, **{**base, **extra, **config})
                rows += [{"env": env, "config": label, "seed": seed, **r} for r in curve]
                print(f"  {env} {label} seed {seed}: {len(curve)} updates", flush=True)
    return rows


def summarize(rows: list[dict[str, Any]], floors: dict[str, float]) -> list[dict[str, Any]]:
    """Per (env, config): drops summed over seeds, KL quantiles, final return mean over seeds."""
    out = []
    for env in floors:
        for label in CONFIGS:
            sel = [r for r in rows if r["env"] == env and r["config"] == label]
            if not sel:
                continue
            seeds = sorted({r["seed"] for r in sel})
            curves = [[r["mean_return"] for r in sel if r["seed"] == s] for s in seeds]
            kls = np.array([r["measured_kl"] for r in sel if not r["skipped"]], dtype=float)
            out.append({
                "env": env, "config": label, "seeds": len(seeds), "updates": len(sel),
                "catastrophic_drops": sum(catastrophic_drops(c, floors[env]) for c in curves),
                "median_kl": float(np.nanmedian(kls)), "max_kl": float(np.nanmax(kls)),
                "frac_kl_above_0.02": float(np.mean(kls > 0.02)),
                "final_return": float(np.mean([np.nanmean(c[-max(1, len(c) // 10):]) for c in curves])),
            })  # fmt: skip
    return out


def _plot(rows: list[dict[str, Any]], envs: list[str], out: Path) -> Path:
    fig, ax = plt.subplots(len(envs), 2, figsize=(13, 4.2 * len(envs)), squeeze=False)
    for i, env in enumerate(envs):
        for j, label in enumerate(CONFIGS):
            sel = [r for r in rows if r["env"] == env and r["config"] == label]
            for s in sorted({r["seed"] for r in sel}):
                mine = [r for r in sel if r["seed"] == s]
                x = [r["env_steps"] for r in mine]
                trpo = label.startswith("TRPO")  # dashed: it can hide under NPG δ=0.01
                kw = {"color": f"C{j}", "lw": 2.0 if trpo else 1.2, "ls": "--" if trpo else "-",
                      "alpha": 0.8, "label": label if s == 0 else None}  # fmt: skip
                ax[i, 0].plot(x, [r["mean_return"] for r in mine], **kw)
                ax[i, 1].plot(x, [r["measured_kl"] for r in mine], **kw)
        ax[i, 0].set(
            xlabel="environment steps", ylabel="batch mean return", title=f"{env}: one line per seed"
        )
        ax[i, 1].axhline(0.01, color="k", lw=0.8, ls=":")
        ax[i, 1].set(yscale="log", xlabel="environment steps", ylabel="measured E_s KL(π_old ‖ π_new)",
                     title=f"{env}: KL of each update (dotted: δ = 0.01)")  # fmt: skip
        ax[i, 0].legend(fontsize=8)
    return save_figure(fig, out / "why_constraint.png")


def run(out: Path, budget: str = "full") -> list[Path]:
    """Write ``why_constraint.png``, per-update ``why_constraint_curves.csv`` and a summary table."""
    if check_budget(budget) == "full":
        tasks, seeds, extra = TASKS, FULL_SEEDS, {}
    else:
        tasks = {"CartPole-v1": ({}, 256, 0.0)}
        seeds, extra = (0,), {"num_envs": 2, "steps_per_env": 64}
    rows = runs(tasks, seeds, **extra)
    summary = summarize(rows, {env: t[2] for env, t in tasks.items()})
    out.mkdir(parents=True, exist_ok=True)
    md = out / "why_constraint.md"
    steps = ", ".join(f"{env} {t[1]} steps" for env, t in tasks.items())
    md.write_text(f"Seeds {list(seeds)}; {steps}.\n\n" + markdown_table(summary))
    return [_plot(rows, list(tasks), out), write_csv(rows, out / "why_constraint_curves.csv"),
            write_csv(summary, out / "why_constraint.csv"), md]  # fmt: skip
