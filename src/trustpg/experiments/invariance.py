"""Covariance: one policy, two parameterisations, one step rule — how far does the *policy* move?

Three pairs of parameterisations of the same initial policy π_0:

- Bernoulli: probability θ vs logit z = log θ/(1−θ) (the seed's example);
- Gaussian: standard deviation σ vs log σ (the seed's "mean vs variance" parameters);
- MLP: a Categorical policy whose first layer is W = c·V with V the parameter, c = 1 vs c = 10.

For each we take the step of one rule with one step size in both parameterisations and measure
E_s[KL(π_0 ‖ π_new)]. A vanilla step x = α g (the seed's argmax of gᵀx s.t. xᵀx = c) moves the
policy by very different KLs; a natural step x = α F⁻¹g moves it by the same KL to first order in
α, because gᵀF⁻¹g is invariant (the seed's "invariant to parameterisation"). For a linear
reparameterisation (the MLP) the natural step is exactly invariant; for the non-linear ones
(logit, log σ) it differs at O(α³) in KL. Damping (F + λI)⁻¹g and truncated conjugate gradient
are defined in parameter space and break the invariance.

Run: ``trustpg experiment invariance --out DIR``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import Tensor, nn

from trustpg.core.curvature import NaturalDirection
from trustpg.core.distributions import Categorical, DiagGaussian
from trustpg.core.rules import NPG, VPG
from trustpg.core.update import PolicyBatch, UpdateRule
from trustpg.experiments._common import (
    check_budget,
    exact_batch,
    markdown_table,
    one_step,
    save_figure,
    write_csv,
)
from trustpg.experiments.bernoulli import LogitBernoulli, ProbBernoulli

#: CG settings that solve F x = g to ~1e-8 relative accuracy for these small models (P ≤ 67;
#: the MLP's F has condition number ~1e7 on its range).
EXACT_CG_ITERS = 1000
EXACT_CG_TOL = 1e-28
#: Step size of the headline table (small: first-order regime) and scale c of the MLP case.
SMALL_STEP = 1e-3
MLP_SCALE = 10.0


class GaussianStd(nn.Module):
    """π(a) = N(μ, σ²) with parameters (μ, σ); or (μ, log σ) with ``log_param``."""

    def __init__(self, mean: float, std: float, log_param: bool) -> None:
        super().__init__()
        self.log_param = log_param
        self.mean = nn.Parameter(torch.tensor([mean], dtype=torch.float64))
        s = float(np.log(std)) if log_param else std
        self.scale = nn.Parameter(torch.tensor([s], dtype=torch.float64))

    def forward(self, obs: Tensor) -> DiagGaussian:
        log_std = self.scale if self.log_param else torch.log(self.scale)
        return DiagGaussian(self.mean.expand(obs.shape[0], 1), log_std)


class ScaledMLP(nn.Module):
    """Categorical(logits = head(tanh(obs (c·V)ᵀ + b))): the first layer's weight is W = c·V."""

    def __init__(self, weight: Tensor, bias: Tensor, head: nn.Linear, scale: float) -> None:
        super().__init__()
        self.scale = scale
        self.v = nn.Parameter(weight.clone() / scale)
        self.b = nn.Parameter(bias.clone())
        self.head = nn.Linear(head.in_features, head.out_features).double()
        self.head.load_state_dict(head.state_dict())

    def forward(self, obs: Tensor) -> Categorical:
        h = torch.tanh(obs @ (self.scale * self.v).T + self.b)
        return Categorical(logits=self.head(h))


@dataclass(frozen=True)
class Case:
    """Two parameterisations (``a``, ``b``) of one initial policy and the batch both step on."""

    name: str
    labels: tuple[str, str]
    make: tuple[Callable[[], nn.Module], Callable[[], nn.Module]]
    batch: PolicyBatch


def cases(seed: int = 0, states: int = 1024) -> list[Case]:
    """The three pairs; sampled batches use ``seed``."""
    theta = 0.2
    bern = exact_batch(torch.tensor([1 - theta, theta], dtype=torch.float64),
                       torch.tensor([0.0, 1.0], dtype=torch.float64))  # fmt: skip
    g = torch.Generator().manual_seed(seed)
    gauss_policy = GaussianStd(0.0, 0.3, log_param=True)
    with torch.no_grad():
        acts = gauss_policy(torch.zeros(states, 1)).sample(g)
    adv = acts.squeeze(-1).pow(2)  # rewards spread: the step is mostly in σ, where the two differ
    gauss = PolicyBatch(torch.zeros(states, 1, dtype=torch.float64), acts, (adv - adv.mean()) / adv.std())
    torch.manual_seed(seed)
    first, head = nn.Linear(4, 8).double(), nn.Linear(8, 3).double()
    obs = torch.randn(states, 4, generator=g, dtype=torch.float64)
    mlp = ScaledMLP(first.weight.data, first.bias.data, head, 1.0)
    with torch.no_grad():
        acts = mlp(obs).sample(g)
    mlp_batch = PolicyBatch(obs, acts, torch.randn(states, generator=g, dtype=torch.float64))
    w, b = first.weight.data, first.bias.data
    return [
        Case("bernoulli", ("θ", "logit"), (lambda: ProbBernoulli(theta),
                                           lambda: LogitBernoulli(theta)), bern),
        Case("gaussian", ("σ", "log σ"), (lambda: GaussianStd(0.0, 0.3, False),
                                          lambda: GaussianStd(0.0, 0.3, True)), gauss),
        Case("mlp", ("W", f"W = {MLP_SCALE:g}·V"), (lambda: ScaledMLP(w, b, head, 1.0),
                                                    lambda: ScaledMLP(w, b, head, MLP_SCALE)), mlp_batch),
    ]  # fmt: skip


def natural(step_size: float, damping: float = 0.0, cg_iters: int = EXACT_CG_ITERS) -> NPG:
    """x = α (F + λI)⁻¹ g with a fixed α (Kakade 2002), no KL normalisation."""
    direction = NaturalDirection(damping=damping, cg_iters=cg_iters, cg_tol=EXACT_CG_TOL)
    return NPG(step_size=step_size, max_kl=None, direction=direction)


def step_kls(case: Case, rule: UpdateRule) -> tuple[float, float]:
    """E_s[KL(π_0 ‖ π_new)] after one step of ``rule`` in parameterisation a and in b.

    NaN if the step leaves the parameter's domain (θ ∉ (0, 1), σ ≤ 0): no policy to compare.
    """
    out = []
    for make in case.make:
        policy = make()
        _, new, measured = one_step(rule, policy, case.batch)
        bad = (isinstance(policy, ProbBernoulli) and not 0 < float(new) < 1) or (
            isinstance(policy, GaussianStd) and not policy.log_param and float(new[1]) <= 0
        )
        out.append(float("nan") if bad else measured)
    return out[0], out[1]


def headline(all_cases: list[Case], vanilla_lr: float = SMALL_STEP) -> list[dict[str, Any]]:
    """KLs of one vanilla and several natural steps (exact, damped, truncated CG) per case."""
    variants: list[tuple[str, VPG | NPG, float, int]] = [
        ("vanilla", VPG(lr=vanilla_lr), 0.0, 0),
        ("natural", natural(SMALL_STEP), 0.0, EXACT_CG_ITERS),
        ("natural", natural(0.3), 0.0, EXACT_CG_ITERS),
        ("natural", natural(SMALL_STEP, damping=0.1), 0.1, EXACT_CG_ITERS),
        ("natural", natural(SMALL_STEP, cg_iters=10), 0.0, 10),
    ]
    rows = []
    for case in all_cases:
        for name, rule, damping, iters in variants:
            a, b = step_kls(case, rule)
            alpha = rule.lr if isinstance(rule, VPG) else rule.step_size
            rows.append({"case": case.name, "rule": name, "alpha": alpha, "damping": damping,
                         "cg_iters": iters, "kl_a": a, "kl_b": b, "ratio_b_over_a": b / a})  # fmt: skip
    return rows


def sweeps(all_cases: list[Case], alphas: np.ndarray, dampings: np.ndarray) -> list[dict[str, Any]]:
    """KL vs α for vanilla and natural steps, and the natural KL ratio vs damping λ (α fixed)."""
    rows = []
    for case in all_cases:
        for alpha in alphas:
            for name, rule in (("vanilla", VPG(lr=float(alpha))), ("natural", natural(float(alpha)))):
                a, b = step_kls(case, rule)
                rows.append({"case": case.name, "sweep": "alpha", "rule": name, "alpha": float(alpha),
                             "damping": 0.0, "kl_a": a, "kl_b": b})  # fmt: skip
        for lam in dampings:
            a, b = step_kls(case, natural(SMALL_STEP, damping=float(lam)))
            rows.append({"case": case.name, "sweep": "damping", "rule": "natural", "alpha": SMALL_STEP,
                         "damping": float(lam), "kl_a": a, "kl_b": b})  # fmt: skip
    return rows


def _plot(all_cases: list[Case], rows: list[dict[str, Any]], out: Path) -> Path:
    fig, ax = plt.subplots(2, len(all_cases), figsize=(5 * len(all_cases), 8), squeeze=False)
    for j, case in enumerate(all_cases):
        la, lb = case.labels
        for name, color in (("vanilla", "C0"), ("natural", "C1")):
            sel = [r for r in rows if r["case"] == case.name and r["sweep"] == "alpha" and r["rule"] == name]
            x = [r["alpha"] for r in sel]
            ax[0, j].plot(x, [r["kl_a"] for r in sel], "-", color=color, lw=2, label=f"{name}, {la}")
            ax[0, j].plot(x, [r["kl_b"] for r in sel], "--", color=color, lw=2, label=f"{name}, {lb}")
        ax[0, j].set(xscale="log", yscale="log", xlabel="step size α (lr for vanilla)",
                     ylabel="E_s KL(π_0 ‖ π_new)", title=f"{case.name}: {la} vs {lb}")  # fmt: skip
        ax[0, j].legend(fontsize=8)
        sel = [r for r in rows if r["case"] == case.name and r["sweep"] == "damping" and r["damping"] > 0]
        ax[1, j].plot([r["damping"] for r in sel], [r["kl_b"] / r["kl_a"] for r in sel], "o-", color="C1")
        ax[1, j].axhline(1.0, color="k", lw=0.8)
        ax[1, j].set(xscale="log", yscale="log", xlabel="damping λ in (F + λI)⁻¹g",
                     ylabel=f"KL ratio ({lb}) / ({la})",
                     title=f"natural step α = {SMALL_STEP:g}")  # fmt: skip
    return save_figure(fig, out / "invariance.png")


def run(out: Path, budget: str = "full", seed: int = 0) -> list[Path]:
    """Write ``invariance.png``, ``invariance.csv`` (sweeps) and ``invariance.md`` (headline)."""
    budget = check_budget(budget)
    n = 17 if budget == "full" else 5
    all_cases = cases(seed)
    rows = sweeps(all_cases, np.logspace(-3, 1, n), np.logspace(-6, 0, 7 if budget == "full" else 3))
    out.mkdir(parents=True, exist_ok=True)
    md = out / "invariance.md"
    md.write_text(
        "One step from the same policy in two parameterisations (a, b); "
        "kl = E_s KL(π_0 ‖ π_new)\n\n" + markdown_table(headline(all_cases))
    )
    return [_plot(all_cases, rows, out), write_csv(rows, out / "invariance.csv"), md]
