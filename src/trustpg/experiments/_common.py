"""Shared plumbing of the experiments: budgets, tables, exact one-step batches, training curves.

Nothing here is an algorithm: the math lives in :mod:`trustpg.core.distributions`, :mod:`trustpg.core.fisher`,
:mod:`trustpg.core.linalg` and :mod:`trustpg.core.rules`; training goes through the public Python API.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import Tensor, nn

from trustpg.config.presets import preset_overrides
from trustpg.core.distributions import kl
from trustpg.core.linalg import flat_params, set_flat_params
from trustpg.core.update import PolicyBatch, StepStats, UpdateRule

#: Hopper-v5 for the experiments: the MuJoCo preset as the committed figures were made, with
#: γ 0.99, a constant δ and 25 CG iterations. The preset now anneals δ (max_kl_final), which would
#: turn every "δ = x" of a sweep into a schedule ending at the same value, and uses γ 0.995 and
#: 10 CG iterations for 1M-step runs.
HOPPER: dict[str, Any] = {
    **preset_overrides("mujoco", "Hopper-v5"),
    "gamma": 0.99,
    "max_kl_final": None,
    "cg_iters": 25,
}

Budget = Literal["full", "smoke"]
BUDGETS: tuple[Budget, ...] = ("full", "smoke")
#: Columns kept from each training update's metrics row.
CURVE_COLUMNS = ("update", "env_steps", "mean_return", "measured_kl", "predicted_kl", "grad_angle", "skipped")


def check_budget(budget: str) -> Budget:
    if budget not in BUDGETS:
        raise ValueError(f"budget must be one of {BUDGETS}, got {budget!r}")
    return budget


def write_csv(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Rows of dicts (same keys) as a CSV with a header; floats with 6 significant digits."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return path


def markdown_table(rows: Sequence[dict[str, Any]], digits: int = 4) -> str:
    """A GitHub markdown table of rows of dicts (same keys)."""
    keys = list(rows[0])

    def cell(v: Any) -> str:
        return f"{v:.{digits}g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def save_figure(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def exact_batch(probs: Tensor, rewards: Tensor) -> PolicyBatch:
    """A one-state batch whose surrogate equals J(θ') = Σ_a π_θ'(a) r(a) exactly.

    One row per action a (``probs`` = π_θ(a), shape ``[K]``), advantage K·π_θ(a)·r(a), so that
    mean_a[π_θ'(a)/π_θ(a) · K π_θ(a) r(a)] = Σ_a π_θ'(a) r(a): the surrogate of
    :func:`trustpg.core.update.surrogate` with the expectation over actions done in closed form.
    Actions are the indices 0..K-1 as a ``[K, 1]`` float column (Bernoulli actions in {0, 1}).
    """
    k = probs.shape[0]
    actions = torch.arange(k, dtype=probs.dtype).unsqueeze(-1)
    obs = torch.zeros(k, 1, dtype=probs.dtype)
    return PolicyBatch(obs, actions, k * probs.detach() * rewards)


def one_step(rule: UpdateRule, policy: nn.Module, batch: PolicyBatch) -> tuple[StepStats, Tensor, float]:
    """Apply one update; return its stats, the new θ and E_s[KL(π_old ‖ π_new)]. θ is then restored.

    The KL is measured here against a *copy* of π_old's parameters: a distribution built from a
    parameter without an intermediate op (e.g. ``Bernoulli(logits=z.expand(...))``) is a view of
    that parameter, and ``trustpg.core.distributions.detach`` keeps the view, so the in-place update
    would move "old" with "new" and ``StepStats.measured_kl`` would read 0.
    """
    theta = flat_params(policy)
    with torch.no_grad():
        old = policy(batch.obs)
        old = old.with_params(tuple(p.detach().clone() for p in old.params))
    stats = rule.update(policy, batch)
    new = flat_params(policy)
    with torch.no_grad():
        measured = float(kl(old, policy(batch.obs)).mean())
    set_flat_params(policy, theta)
    return stats, new, measured


def train_curve(algo: str, env: str, steps: int, seed: int, **config: Any) -> list[dict[str, Any]]:
    """Train with the public API and return the per-update metrics (``CURVE_COLUMNS`` only).

    ``mean_return`` is the mean return of the episodes that ended during that update's batch; when
    none ended (long MuJoCo episodes) the previous value is carried forward. A run the trainer
    stops for numerical faults (``TrainingFault``: too many skipped updates, e.g. a divergent
    learning rate) ends early; its rows so far are returned and the last one has ``stopped`` = 1.
    """
    from trustpg import NPG, TRPO, VPG
    from trustpg.errors import TrainingFault

    factory = {"trpo": TRPO, "npg": NPG, "vpg": VPG}[algo]
    rows: list[Mapping[str, Any]] = []
    defaults = {"eval_episodes": 0, "tensorboard": False, "progress": False, "checkpoint_every": 0}
    agent = factory(env, seed=seed, **{**defaults, **config})
    stopped = 0
    try:
        agent.learn(steps, callback=rows.append, progress=False)
    except TrainingFault:
        stopped = 1
    finally:
        agent.close()
    out, last = [], math.nan
    for r in rows:
        ret = r["mean_return"]
        last = last if math.isnan(ret) else ret
        out.append({**{k: (last if k == "mean_return" else r[k]) for k in CURVE_COLUMNS}, "stopped": 0})
    if out:
        out[-1]["stopped"] = stopped
    return out


def final_and_auc(returns: Sequence[float], tail: float = 0.1) -> tuple[float, float]:
    """(mean return over the last ``tail`` fraction of updates, mean over all updates = AUC/steps).

    NaN entries (no episode finished yet) are ignored.
    """
    r = np.asarray(returns, dtype=float)
    n_tail = max(1, math.ceil(tail * len(r)))
    return float(np.nanmean(r[-n_tail:])), float(np.nanmean(r))
