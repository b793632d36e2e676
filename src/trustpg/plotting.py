"""Learning curves from run directories (reads metrics.csv and config.json only)."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from trustpg.logger import read_metrics


def load_curve(run: Path, x: str, y: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) columns of a run's metrics.csv, rows with a missing y dropped."""
    path = run / "metrics.csv"
    if not path.is_file():
        raise ValueError(f"{run} has no metrics.csv")
    rows = read_metrics(path)
    missing = [c for c in (x, y) if rows and c not in rows[0]]
    if missing:
        raise ValueError(f"{path}: no column {missing[0]!r}; columns: {', '.join(rows[0])}")
    xs = np.array([float(r[x]) for r in rows])
    ys = np.array([float(r[y]) for r in rows])
    keep = ~np.isnan(ys)
    return xs[keep], ys[keep]


def mean_std_on_grid(
    curves: list[tuple[np.ndarray, np.ndarray]], points: int = 100
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Interpolate curves onto a common x grid (up to the shortest run); mean and std across them."""
    usable = [(x, y) for x, y in curves if len(x) >= 2]
    if not usable:
        raise ValueError("no curve has two or more points to plot")
    lo = max(x[0] for x, _ in usable)
    hi = min(x[-1] for x, _ in usable)
    grid = np.linspace(lo, hi, points)
    ys = np.stack([np.interp(grid, x, y) for x, y in usable])
    return grid, ys.mean(0), ys.std(0)


def group_runs(runs: list[Path]) -> dict[tuple[str, str], list[Path]]:
    """Runs grouped by (env, algo) from their config.json."""
    groups: dict[tuple[str, str], list[Path]] = defaultdict(list)
    for run in runs:
        cfg_path = run / "config.json"
        if not cfg_path.is_file():
            raise ValueError(f"{run} is not a run directory (no config.json)")
        cfg = json.loads(cfg_path.read_text())
        groups[(cfg["env"], cfg["algo"])].append(run)
    return dict(groups)


def expand_runs(paths: list[Path]) -> list[Path]:
    """Run directories among ``paths``; a directory that is not a run stands for the runs below it."""
    runs: list[Path] = []
    for p in paths:
        if (p / "config.json").is_file():
            runs.append(p)
        elif p.is_dir():
            found = sorted(c.parent for c in p.rglob("config.json") if (c.parent / "metrics.csv").is_file())
            if not found:
                raise ValueError(f"{p} holds no run directories (config.json + metrics.csv)")
            runs.extend(found)
        else:
            raise ValueError(f"{p} is not a run directory")
    return list(dict.fromkeys(runs))


def aggregate(
    runs: list[Path], x: str = "env_steps", y: str = "mean_return"
) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray, np.ndarray, int]]:
    """(env, algo) → (x grid, mean, std across seeds, number of runs): what :func:`plot_runs` draws."""
    out = {}
    for key, members in sorted(group_runs(expand_runs(runs)).items()):
        grid, mean, std = mean_std_on_grid([load_curve(r, x, y) for r in members])
        out[key] = (grid, mean, std, len(members))
    return out


def plot_runs(runs: list[Path], out: Path, x: str = "env_steps", y: str = "mean_return") -> Path:
    """One panel per env, one line (mean ± std across seeds) per algorithm."""
    curves = aggregate(runs, x, y)
    envs = sorted({env for env, _ in curves})
    cols = min(3, len(envs))
    rows = math.ceil(len(envs) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    for ax, env in zip(axes.flat, envs):
        for (e, algo), (grid, mean, std, n) in curves.items():
            if e != env:
                continue
            ax.plot(grid, mean, label=f"{algo.upper()} (n={n})")
            ax.fill_between(grid, mean - std, mean + std, alpha=0.25)
        ax.set_title(env)
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.grid(alpha=0.3)
        ax.legend()
    for ax in list(axes.flat)[len(envs) :]:
        ax.set_visible(False)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
