"""The step-size sweep again with the task's own scale left in: no advantage or reward normalisation.

The main sweep (:mod:`trustpg.experiments.stepsize_vs_constraint`) standardises advantages per
batch (and, in the presets, rewards), which already removes the reward scale from g and hence
from the meaning of a VPG learning rate or a fixed NPG α. Here both are off, so g scales with
the advantages of the task: the good α of x = α g or x = α F⁻¹g moves with that scale, while
TRPO's β = sqrt(2δ / g̃ᵀFg̃) divides it out — the step of a KL budget is invariant to rescaling
the rewards.

Run: ``trustpg experiment stepsize-raw --out DIR``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trustpg.experiments._common import check_budget
from trustpg.experiments.stepsize_vs_constraint import sweep_runs, write_outputs

RAW = {"normalize_advantages": False, "normalize_reward": False}
#: Wider grids (downwards): raw advantages are tens to hundreds.
SWEEPS: dict[str, tuple[str, tuple[float, ...]]] = {
    "vpg": ("vpg_lr", (1e-4, 1e-3, 1e-2, 0.1, 1.0)),
    "npg": ("npg_step_size", (1e-3, 1e-2, 0.1, 1.0, 10.0)),
    "trpo": ("max_kl", (0.01,)),
}
TASKS: dict[str, tuple[dict[str, Any], int]] = {
    "CartPole-v1": ({"gamma": 0.99}, 49_152),
    "Pendulum-v1": ({"gamma": 0.9, "gae_lambda": 0.95}, 98_304),
}
FULL_SEEDS = (0,)


def run(out: Path, budget: str = "full") -> list[Path]:
    """Write ``stepsize_raw*`` (same files as stepsize-vs-constraint)."""
    if check_budget(budget) == "full":
        runs, curves = sweep_runs(TASKS, SWEEPS, FULL_SEEDS, **RAW)
    else:
        smoke = {algo: (field, values[:1]) for algo, (field, values) in SWEEPS.items()}
        runs, curves = sweep_runs(
            {"CartPole-v1": ({}, 256)}, smoke, (0,), num_envs=2, steps_per_env=64, **RAW
        )
    note = "Advantage and reward normalisation off. "
    return write_outputs(runs, curves, out, "stepsize_raw", note)
