"""The seed's Bernoulli example: F(θ) = 1/θ + 1/(1−θ), and what it does to a step.

A one-parameter policy p(A=1) = θ. Its Fisher information is computed three independent ways
(closed form; Monte Carlo E[(∂θ log π(A))²]; the Hessian of θ' ↦ KL(π_θ ‖ π_θ') at θ' = θ, the
seed's F = ∇²EKL) plus the library's analytic :func:`trustpg.core.fisher.fisher_matrix`. Then one
step on J(θ) = E[r(A)] with r(1) = 1, r(0) = 0 (so ∇θJ = 1) is taken by the library's VPG
(x = α g) and NPG (x = α F⁻¹g, no damping) rules, in the probability θ and in the logit
z = log θ/(1−θ) parameterisation. The natural step shrinks like θ(1−θ) near 0 and 1 and moves
the policy identically under both parameterisations (to first order); vanilla steps do not.

Run: ``trustpg experiment bernoulli --out DIR``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import Tensor, nn

from trustpg.core.curvature import NaturalDirection
from trustpg.core.distributions import Bernoulli, kl
from trustpg.core.fisher import fisher_matrix
from trustpg.core.rules import NPG, VPG
from trustpg.core.update import UpdateRule
from trustpg.experiments._common import (
    check_budget,
    exact_batch,
    markdown_table,
    one_step,
    save_figure,
    write_csv,
)

#: The θ values the seed quotes: F(0.1) = F(0.9) = 11.11, F(0.5) = 4.
SEED_THETAS = (0.1, 0.5, 0.9)
#: Step size α of the vanilla and natural steps compared in the figure.
STEP_SIZE = 0.05


class ProbBernoulli(nn.Module):
    """π(A=1) = θ, one parameter shared by every state (the seed's parameterisation)."""

    def __init__(self, theta: float) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.tensor([theta], dtype=torch.float64))

    def forward(self, obs: Tensor) -> Bernoulli:
        return Bernoulli(probs=self.theta.expand(obs.shape[0], 1))


class LogitBernoulli(nn.Module):
    """π(A=1) = sigmoid(z): the same policy family with the logit z as parameter."""

    def __init__(self, theta: float) -> None:
        super().__init__()
        z = float(np.log(theta) - np.log1p(-theta))
        self.z = nn.Parameter(torch.tensor([z], dtype=torch.float64))

    def forward(self, obs: Tensor) -> Bernoulli:
        return Bernoulli(logits=self.z.expand(obs.shape[0], 1))


def fisher_closed_form(theta: float) -> float:
    """F(θ) = 1/θ + 1/(1−θ) (the seed's Bernoulli example)."""
    return 1.0 / theta + 1.0 / (1.0 - theta)


def fisher_monte_carlo(theta: float, samples: int, generator: torch.Generator) -> float:
    """F(θ) ≈ (1/N) Σ_i (∂θ log π_θ(a_i))², a_i ~ π_θ: the seed's F = E[∇log π ∇log πᵀ].

    Each sample gets its own copy of θ so that one backward pass gives every per-sample score.
    """
    thetas = torch.full((samples, 1), theta, dtype=torch.float64, requires_grad=True)
    dist = Bernoulli(probs=thetas)
    actions = dist.sample(generator)
    (scores,) = torch.autograd.grad(dist.log_prob(actions).sum(), thetas)
    return float(scores.pow(2).mean())


def fisher_kl_hessian(theta: float, logit: bool = False) -> float:
    """F = ∂²/∂θ'² KL(π_θ ‖ π_θ') at θ' = θ (the seed's F = ∇²_x EKL(x)), by autograd.

    With ``logit`` the parameter is z = log θ/(1−θ) instead of θ (closed form θ(1−θ)).
    """
    if logit:
        z0 = torch.tensor([np.log(theta) - np.log1p(-theta)], dtype=torch.float64)
        old = Bernoulli(logits=z0.unsqueeze(0))
        fn = lambda z: kl(old, Bernoulli(logits=z.unsqueeze(0))).sum()  # noqa: E731
        return float(torch.autograd.functional.hessian(fn, z0))
    t0 = torch.tensor([theta], dtype=torch.float64)
    old = Bernoulli(probs=t0.unsqueeze(0))
    fn = lambda t: kl(old, Bernoulli(probs=t.unsqueeze(0))).sum()  # noqa: E731
    return float(torch.autograd.functional.hessian(fn, t0))


def fisher_library(policy: nn.Module) -> float:
    """The library's analytic F = E_s[JᵀMJ] (:func:`trustpg.core.fisher.fisher_matrix`), 1×1."""
    return float(fisher_matrix(policy, torch.zeros(1, 1, dtype=torch.float64)))


def steps_at(theta: float, step_size: float = STEP_SIZE) -> dict[str, float]:
    """New π(A=1) and KL(π_θ ‖ π_θ') after one vanilla / natural step, both parameterisations.

    The objective is J = θ, evaluated exactly (:func:`exact_batch`). A probability that leaves
    (0, 1) is not a policy: its entries are NaN.
    """
    batch = exact_batch(torch.tensor([1.0 - theta, theta], dtype=torch.float64),
                        torch.tensor([0.0, 1.0], dtype=torch.float64))  # fmt: skip
    natural = NPG(step_size=step_size, max_kl=None, direction=NaturalDirection(damping=0.0))
    rules: dict[str, UpdateRule] = {"vanilla": VPG(lr=step_size), "natural": natural}
    out: dict[str, float] = {}
    for param, make in (("prob", ProbBernoulli), ("logit", LogitBernoulli)):
        for name, rule in rules.items():
            _, new, measured = one_step(rule, make(theta), batch)
            p_new = float(new) if param == "prob" else float(torch.sigmoid(new))
            valid = 0.0 < p_new < 1.0
            out[f"{name}_{param}_dtheta"] = p_new - theta if valid else float("nan")
            out[f"{name}_{param}_kl"] = measured if valid else float("nan")
    return out


def fisher_rows(thetas: np.ndarray, samples: int, seed: int = 0) -> list[dict[str, Any]]:
    """One row per θ: F four ways (prob parameter) and F in the logit parameter; the steps."""
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for t in thetas:
        theta = float(t)
        rows.append({
            "theta": theta,
            "F_closed_form": fisher_closed_form(theta),
            "F_monte_carlo": fisher_monte_carlo(theta, samples, gen),
            "F_kl_hessian": fisher_kl_hessian(theta),
            "F_fisher_matrix": fisher_library(ProbBernoulli(theta)),
            "F_logit_kl_hessian": fisher_kl_hessian(theta, logit=True),
            **steps_at(theta),
        })  # fmt: skip
    return rows


def _plot(rows: list[dict[str, Any]], marks: list[dict[str, Any]], out: Path) -> Path:
    th = np.array([r["theta"] for r in rows])
    col = lambda k: np.array([r[k] for r in rows])  # noqa: E731
    fig, ax = plt.subplots(1, 3, figsize=(15, 4.2))
    ax[0].plot(th, col("F_closed_form"), "k-", lw=2, label="closed form 1/θ + 1/(1−θ)")
    ax[0].plot(th, col("F_monte_carlo"), "o", ms=3, label="Monte Carlo E[score²]")
    ax[0].plot(th, col("F_kl_hessian"), "x", ms=4, label="autograd Hessian of KL")
    ax[0].plot(th, col("F_logit_kl_hessian"), "--", label="logit parameter: θ(1−θ)")
    for m in marks:
        ax[0].annotate(f"F({m['theta']:g}) = {m['F_closed_form']:.2f}", (m["theta"], m["F_closed_form"]),
                       textcoords="offset points", xytext=(0, 8), ha="center", fontsize=8)  # fmt: skip
        ax[0].plot(m["theta"], m["F_closed_form"], "r*", ms=10)
    ax[0].set(yscale="log", xlabel="θ = π(A=1)", ylabel="Fisher information F", title="F three ways")
    styles = {"vanilla_prob": "C0-", "natural_prob": "C1-", "vanilla_logit": "C0--", "natural_logit": "C1:"}
    for key, st in styles.items():
        label = key.replace("_", " step, ") + " param"
        ax[1].plot(th, np.abs(col(f"{key}_dtheta")), st, lw=2, label=label)
        ax[2].plot(th, col(f"{key}_kl"), st, lw=2, label=label)
    ax[1].set(
        yscale="log", xlabel="θ", ylabel="|Δπ(A=1)|", title=f"policy change of one step, α = {STEP_SIZE}"
    )
    ax[2].set(yscale="log", xlabel="θ", ylabel="KL(π_θ ‖ π_θ')", title="KL of the step")
    for a in ax:
        a.legend(fontsize=7)
    return save_figure(fig, out / "bernoulli.png")


def run(out: Path, budget: str = "full", seed: int = 0) -> list[Path]:
    """Write ``bernoulli.png``, ``bernoulli.csv`` (every θ) and ``bernoulli.md`` (the seed's θ)."""
    budget = check_budget(budget)
    n_grid, samples = (97, 200_000) if budget == "full" else (9, 2_000)
    grid = np.union1d(np.linspace(0.02, 0.98, n_grid), SEED_THETAS)
    rows = fisher_rows(grid, samples, seed)
    marks = [r for r in rows if any(abs(r["theta"] - t) < 1e-12 for t in SEED_THETAS)]
    out.mkdir(parents=True, exist_ok=True)
    md = out / "bernoulli.md"
    md.write_text(
        f"Bernoulli policy, Monte Carlo with {samples} samples per θ, steps with α = {STEP_SIZE}\n\n"
        + markdown_table(marks)
    )
    return [_plot(rows, marks, out), write_csv(rows, out / "bernoulli.csv"), md]
