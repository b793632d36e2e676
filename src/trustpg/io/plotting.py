"""Learning curves from run directories (reads config.json and metrics.csv only).

**Groups.** Runs are grouped by env and by every config field that changes results, i.e. all but
``seed``, :data:`NOT_RESULT_FIELDS` (paths, display, speed-only settings) and the fields the run's
algorithm does not read (:data:`UNUSED_BY`); fields missing from an older config.json count as
their defaults. One group is one line, the mean ± std across its runs.
A line is labelled with its algorithm plus the fields that differ between the groups of the same
env and algorithm, e.g. ``TRPO max_kl=0.02`` next to ``TRPO max_kl=0.01``; runs that differ only in
seed share a line.

**Truncation.** A line is drawn where all of its runs have data: on a common x grid from the
latest first point to the earliest last point of its runs (linear interpolation), so ``n`` is the
same along the whole line. When that cuts a longer run short, a one-line note says so, e.g.
``note: CartPole-v1 TRPO (n=3) cut at 40960 env_steps, the shortest of its runs (longest 100352)``,
and the legend entry says ``cut``. A run with fewer than two points is left out, with a note.

**Colours** depend only on the line's label, never on the order of the runs: VPG, NPG and TRPO
alone in a panel are blue, orange and green; a variant's colour comes from a hash of its label
(:func:`colours`).
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from trustpg.config.train_config import TrainConfig
from trustpg.io.logger import metrics_file, read_metrics

#: Config fields that do not change what a run learns: where it is written, what it displays,
#: and the speed-only settings (docs/usage.md: results change in float rounding or in equally
#: valid action noise, not in kind). Grouping and compare's reuse check ignore them.
NOT_RESULT_FIELDS = frozenset({
    "run_dir", "run_name", "progress", "tensorboard", "checkpoint_every", "eval_every",
    "torch_threads", "update_threads", "vectorization", "critic_overlap", "critic_process",
    "workers", "ray_address",
})  # fmt: skip
#: The natural-gradient direction's fields (trustpg.train.build.make_direction).
_NATURAL = ("damping", "cg_iters", "cg_tol", "fvp_method", "fvp_stride", "curvature", "pcg_iters",
            "kfac_decay", "ng_angle_states")  # fmt: skip
#: Fields an algorithm never reads (trustpg.train.build.make_rule): a VPG run is the same
#: whatever its max_kl.
UNUSED_BY = {
    "vpg": frozenset(
        {"max_kl", "max_kl_final", "npg_step_size", "backtrack_ratio", "max_backtracks", "kl", *_NATURAL}
    ),
    "npg": frozenset({"vpg_lr", "vpg_optimizer", "backtrack_ratio", "max_backtracks", "kl"}),
    "trpo": frozenset({"vpg_lr", "vpg_optimizer", "npg_step_size"}),
}
ALGO_COLOURS = {"vpg": "tab:blue", "npg": "tab:orange", "trpo": "tab:green"}
VARIANT_COLOURS = ["tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:gray", "tab:olive", "tab:cyan"]


def load_config(run: Path) -> dict[str, Any]:
    """A run's config.json with fields it lacks (older runs) set to the defaults."""
    path = run / "config.json"
    if not path.is_file():
        raise ValueError(f"{run} is not a run directory (no config.json)")
    try:
        cfg = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON: {e}") from None
    if not isinstance(cfg, dict) or "env" not in cfg or "algo" not in cfg:
        raise ValueError(f"{path} is not a trustpg config (no env and algo)")
    return {**TrainConfig().to_dict(), **cfg}


def result_fields(cfg: dict[str, Any]) -> dict[str, Any]:
    """The fields of ``cfg`` that change results: all but :data:`NOT_RESULT_FIELDS` and those its
    algorithm does not read (:data:`UNUSED_BY`; NPG with a fixed npg_step_size reads no max_kl)."""
    unused = set(UNUSED_BY.get(cfg.get("algo", ""), ()))
    if cfg.get("algo") == "npg" and cfg.get("npg_step_size") is not None:
        unused |= {"max_kl", "max_kl_final"}
    return {k: v for k, v in cfg.items() if k not in NOT_RESULT_FIELDS and k not in unused}


def fmt_value(v: Any) -> str:
    """A config value as it reads on a command line: ``max_kl=0.02``, ``hidden_sizes=64,64``."""
    if isinstance(v, list | tuple):
        return ",".join(map(str, v))
    return str(v)


@dataclass(frozen=True, order=True)
class Group:
    """A line: env, algorithm and ``variant`` (the differing fields, "" when the algorithm has one)."""

    env: str
    algo: str
    variant: str = ""

    @property
    def key(self) -> tuple[str, str]:
        """(env, ``algo[ variant]``): the key of :func:`aggregate`."""
        return self.env, f"{self.algo} {self.variant}".strip()

    @property
    def label(self) -> str:
        return f"{self.algo.upper()} {self.variant}".strip()


def group_configs(configs: dict[Path, dict[str, Any]]) -> dict[Group, list[Path]]:
    """Runs grouped by their result-changing config fields except seed, labelled (see module doc)."""
    raw: dict[tuple, list[Path]] = {}
    fields: dict[tuple, dict[str, Any]] = {}
    for run, cfg in configs.items():
        fixed = {k: v for k, v in result_fields(cfg).items() if k != "seed"}
        key = (fixed["env"], fixed["algo"], json.dumps(fixed, sort_keys=True))
        raw.setdefault(key, []).append(run)
        fields[key] = fixed
    out: dict[Group, list[Path]] = {}
    for key, members in raw.items():
        env, algo, _ = key
        family = [fields[k] for k in raw if k[:2] == (env, algo)]
        differ = [f for f in fields[key] if len({json.dumps(c.get(f)) for c in family}) > 1]
        variant = " ".join(f"{f}={fmt_value(fields[key][f])}" for f in differ)
        out[Group(env, algo, variant)] = members
    return dict(sorted(out.items()))


def group_runs(runs: list[Path]) -> dict[Group, list[Path]]:
    """Run directories grouped as :func:`group_configs`, from their config.json."""
    return group_configs({run: load_config(run) for run in runs})


def load_curve(run: Path, x: str, y: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) columns of a run's metrics.csv, rows with a missing y dropped."""
    path = metrics_file(run)
    if path is None:
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
    """Interpolate curves onto a common x grid where all have data; mean and std across them."""
    if not curves or any(len(x) < 2 for x, _ in curves):
        raise ValueError("every curve needs two or more points")
    lo = max(x[0] for x, _ in curves)
    hi = min(x[-1] for x, _ in curves)
    grid = np.linspace(lo, hi, points)
    ys = np.stack([np.interp(grid, x, y) for x, y in curves])
    return grid, ys.mean(0), ys.std(0)


def expand_runs(paths: Iterable[Path]) -> list[Path]:
    """Run directories among ``paths``; a directory that is not a run stands for the runs below it."""
    runs: list[Path] = []
    for p in paths:
        if (p / "config.json").is_file():
            runs.append(p)
        elif p.is_dir():
            found = sorted(c.parent for c in p.rglob("config.json") if metrics_file(c.parent))
            if not found:
                raise ValueError(f"{p} holds no run directories (config.json + metrics.csv)")
            runs.extend(found)
        else:
            raise ValueError(f"{p} is not a run directory")
    return list(dict.fromkeys(runs))


@dataclass
class Curve:
    grid: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    n: int
    cut: bool


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.4g}"


def curves(
    runs: list[Path], x: str = "env_steps", y: str = "mean_return", note: Callable[[str], None] = print
) -> dict[Group, Curve]:
    """One :class:`Curve` per group of ``runs``; ``note`` gets each cut or left-out run (module doc)."""
    out = {}
    for group, members in group_runs(expand_runs(runs)).items():
        loaded = [(r, *load_curve(r, x, y)) for r in members]
        usable = [(xs, ys) for _, xs, ys in loaded if len(xs) >= 2]
        short = [str(r) for r, xs, _ in loaded if len(xs) < 2]
        name = f"{group.env} {group.label}"
        if short:
            note(f"note: {name}: left out {len(short)} run(s) with fewer than 2 points: {', '.join(short)}")
        if not usable:
            continue
        grid, mean, std = mean_std_on_grid(usable)
        longest = max(xs[-1] for xs, _ in usable)
        cut = longest > grid[-1]
        if cut:
            note(f"note: {name} (n={len(usable)}) cut at {_num(grid[-1])} {x}, the shortest of its runs "
                 f"(longest {_num(longest)})")  # fmt: skip
        out[group] = Curve(grid, mean, std, len(usable), cut)
    if not out:
        raise ValueError("no run has two or more points to plot")
    return out


def aggregate(
    runs: list[Path], x: str = "env_steps", y: str = "mean_return"
) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray, np.ndarray, int]]:
    """(env, ``algo[ variant]``) → (x grid, mean, std across seeds, number of runs), notes silenced."""
    return {g.key: (c.grid, c.mean, c.std, c.n) for g, c in curves(runs, x, y, note=lambda _: None).items()}


def colours(groups: Iterable[Group]) -> dict[Group, str]:
    """A colour per group that depends only on the groups' labels (see module doc)."""
    out: dict[Group, str] = {}
    ordered = sorted(groups, key=lambda g: (g.env, g.label))
    for env in dict.fromkeys(g.env for g in ordered):
        panel = [g for g in ordered if g.env == env]
        used: set[str] = set()
        for g in panel:
            alone = sum(h.algo == g.algo for h in panel) == 1
            if alone and not g.variant and g.algo in ALGO_COLOURS:
                out[g] = ALGO_COLOURS[g.algo]
                used.add(out[g])
        for g in panel:
            if g in out:
                continue
            start = zlib.crc32(g.label.encode())
            for i in range(len(VARIANT_COLOURS)):
                colour = VARIANT_COLOURS[(start + i) % len(VARIANT_COLOURS)]
                if colour not in used:
                    break
            out[g] = colour
            used.add(colour)
    return out


def draw(lines: dict[Group, Curve], x: str, y: str) -> Figure:
    """One panel per env, one line (mean ± std band) per group."""
    envs = sorted({g.env for g in lines})
    cols = min(3, len(envs))
    rows = math.ceil(len(envs) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    colour = colours(lines)
    for ax, env in zip(axes.flat, envs):
        for g in sorted((g for g in lines if g.env == env), key=lambda g: g.label):
            c = lines[g]
            label = f"{g.label} (n={c.n}{', cut' if c.cut else ''})"
            ax.plot(c.grid, c.mean, label=label, color=colour[g])
            ax.fill_between(c.grid, c.mean - c.std, c.mean + c.std, alpha=0.25, color=colour[g])
        ax.set_title(env)
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    for ax in list(axes.flat)[len(envs) :]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def plot_runs(
    runs: list[Path],
    out: Path,
    x: str = "env_steps",
    y: str = "mean_return",
    note: Callable[[str], None] = print,
) -> Path:
    """Draw the groups of ``runs`` (see module doc) into ``out``; notes go to ``note`` (stdout)."""
    fig = draw(curves(runs, x, y, note), x, y)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
