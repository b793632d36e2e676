"""The natural gradient in real training: its angle to the vanilla gradient, and the KL model.

For a positive-definite F, gᵀF⁻¹g > 0, so the angle between g̃ = F⁻¹g and g is below 90° (the
seed: "it never points more than 90° away from the steepest ascent direction"). The trainer logs
this angle (``grad_angle``, computed from the CG solution of (F + λI)g̃ = g), and both the
second-order prediction ½xᵀFx of a step's KL (``predicted_kl``; for TRPO δ·s² where s is the
line-search shrink factor) and the KL measured after the step on the batch (``measured_kl``).
Their ratio shows how good the seed's c ≈ ½xᵀFx is at the step sizes training uses.

Run: ``trustpg experiment angle --out DIR``.
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
    markdown_table,
    save_figure,
    train_curve,
    write_csv,
)

#: env → (config overrides, steps per run) for the full budget.
TASKS: dict[str, tuple[dict[str, Any], int]] = {
    "CartPole-v1": ({}, 49_152),
    "Pendulum-v1": (preset_overrides("classic", "Pendulum-v1"), 61_440),
    "Hopper-v5": (HOPPER, 30_720),
}
#: label → (algo, config): TRPO (δ = 0.01), and NPG with a fixed α, whose steps have KLs over
#: orders of magnitude (NPG normalised to δ takes the same steps as TRPO whenever the line search
#: accepts the full step, which it did at every update of these runs).
ALGOS: dict[str, tuple[str, dict[str, Any]]] = {
    "TRPO δ=0.01": ("trpo", {}),
    "NPG α=3": ("npg", {"npg_step_size": 3.0}),
}


def angle_rows(tasks: dict[str, tuple[dict[str, Any], int]], seed: int, **extra: Any) -> list[dict[str, Any]]:
    """Per-update rows (angle, predicted and measured KL) of every (env, algo), one seed."""
    rows = []
    for env, (overrides, steps) in tasks.items():
        base = {k: v for k, v in overrides.items() if k != "steps"}
        for label, (algo, config) in ALGOS.items():
            curve = train_curve(algo, env, steps, seed, **{**base, **extra, **config})
            for r in curve:
                ratio = r["predicted_kl"] / r["measured_kl"] if r["measured_kl"] > 0 else float("nan")
                rows.append({"env": env, "algo": label, "seed": seed, **r, "predicted_over_measured": ratio})
    return rows


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (env, algo): angle min/median/max and quantiles of predicted/measured KL."""
    out = []
    for env in dict.fromkeys(r["env"] for r in rows):
        for algo in ALGOS:
            sel = [r for r in rows if r["env"] == env and r["algo"] == algo and not r["skipped"]]
            if not sel:
                continue
            ang = np.array([r["grad_angle"] for r in sel], dtype=float)
            ratio = np.array([r["predicted_over_measured"] for r in sel], dtype=float)
            out.append({
                "env": env, "algo": algo, "updates": len(sel),
                "angle_min": float(np.nanmin(ang)), "angle_median": float(np.nanmedian(ang)),
                "angle_max": float(np.nanmax(ang)), "all_below_90": bool(np.nanmax(ang) < 90.0),
                "ratio_p10": float(np.nanpercentile(ratio, 10)),
                "ratio_median": float(np.nanmedian(ratio)),
                "ratio_p90": float(np.nanpercentile(ratio, 90)),
            })  # fmt: skip
    return out


def _plot(rows: list[dict[str, Any]], out: Path) -> Path:
    envs = list(dict.fromkeys(r["env"] for r in rows))
    fig, ax = plt.subplots(1, 3, figsize=(18, 4.8))
    for i, env in enumerate(envs):
        for algo, ls in zip(ALGOS, ("-", "--")):
            sel = [r for r in rows if r["env"] == env and r["algo"] == algo and not r["skipped"]]
            x = [r["update"] for r in sel]
            label = f"{env} {algo}"
            ratio = [r["predicted_over_measured"] for r in sel]
            ax[0].plot(x, [r["grad_angle"] for r in sel], ls, color=f"C{i}", label=label)
            ax[1].plot(x, ratio, ls, color=f"C{i}", label=label)
            ax[2].plot([r["measured_kl"] for r in sel], ratio, "o" if ls == "-" else "x", color=f"C{i}",
                       label=label)  # fmt: skip
    ax[0].axhline(90, color="r", lw=1)
    ax[0].set(ylim=(0, 95), xlabel="update", ylabel="angle(F⁻¹g, g) in degrees",
              title="natural vs vanilla gradient (red: 90°)")  # fmt: skip
    ax[1].axhline(1.0, color="k", lw=0.8)
    ax[1].set(yscale="log", xlabel="update", ylabel="½xᵀ(F+λI)x / measured KL",
              title="second-order KL prediction vs measured KL")  # fmt: skip
    ax[2].axhline(1.0, color="k", lw=0.8)
    ax[2].set(xscale="log", yscale="log", xlabel="measured KL of the step", ylabel="½xᵀ(F+λI)x / measured KL",
              title="prediction / measurement against step size")  # fmt: skip
    for a in ax:
        a.legend(fontsize=7)
    return save_figure(fig, out / "angle.png")


def run(out: Path, budget: str = "full", seed: int = 0) -> list[Path]:
    """Write ``angle.png``, per-update ``angle_curves.csv`` and the summary ``angle.md``/``.csv``."""
    if check_budget(budget) == "full":
        rows = angle_rows(TASKS, seed)
    else:
        rows = angle_rows({"CartPole-v1": ({}, 256)}, seed, num_envs=2, steps_per_env=64)
    summary = summarize(rows)
    out.mkdir(parents=True, exist_ok=True)
    md = out / "angle.md"
    steps = ", ".join(f"{env} {r['env_steps']} steps" for env, r in
                      {r["env"]: r for r in rows}.items())  # fmt: skip
    md.write_text(
        f"Seed {seed}; {steps}; damping 0.1; CG iterations: 10 (25 for the MuJoCo preset).\n\n"
        + markdown_table(summary)
    )
    return [
        _plot(rows, out),
        write_csv(rows, out / "angle_curves.csv"),
        write_csv(summary, out / "angle.csv"),
        md,
    ]
