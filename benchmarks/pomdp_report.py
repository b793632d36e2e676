"""A small suite's section and figure in docs/benchmarks.md (``--suite pomdp``, the default: "Recurrent
policies"; ``--suite minatar``), from bench-runs/index.json only.

The runs are the ``pomdp`` suite (``python benchmarks/suite.py run --suite pomdp ...``, the
commands are in the generated section): TRPO with the MLP of the classic preset (variant
``preset``) against a GRU or LSTM (variant ``policy=gru``/``policy=lstm``) on the velocity-free
envs of :mod:`trustpg.envs.pomdp`, and the MLP on the fully observed original for reference.
Every finished run of a commit is shown; one row per (env, variant, commit), never mixed.

    python benchmarks/suite.py index && python benchmarks/pomdp_report.py
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SUITE = "pomdp"


def marks(suite: str) -> re.Pattern[str]:
    """The generated section of ``suite`` in docs/benchmarks.md."""
    return re.compile(rf"(<!-- {suite}:start[^\n]*-->\n)(.*?)(<!-- {suite}:end -->)", re.S)


Group = tuple[str, str, str]  # env, variant, commit


def groups(index: list[dict[str, Any]], suite: str = SUITE) -> dict[Group, list[dict[str, Any]]]:
    out: dict[Group, list[dict[str, Any]]] = defaultdict(list)
    for e in index:
        ok = e["suite"] == suite and e["layout"] == "suite" and e["attributed"] and e["finished"]
        if ok and e["eval_mean"] is not None:
            out[(e["env"], e["variant"], e["commit"])].append(e)
    return {k: sorted(v, key=lambda r: r["seed"]) for k, v in sorted(out.items())}


def late_returns(gs: dict[Group, list[dict[str, Any]]], root: Path) -> dict[str, float]:
    """Each run's training return over its last 10 % of steps, by run path (read once per report)."""
    from suite_index import late_training_return, read_rows  # type: ignore[import-not-found]

    return {r["path"]: late_training_return(read_rows(root / r["path"])) for g in gs.values() for r in g}


def table(gs: dict[Group, list[dict[str, Any]]], late_by_run: dict[str, float]) -> list[str]:
    lines = [
        "| env | network (variant) | commit | seeds | final return, mean ± std | per seed "
        "| training return, last 10 % of steps | steps/s (median) | wall time per run (median) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (env, variant, commit), runs in gs.items():
        xs = np.array([r["eval_mean"] for r in runs])
        per_seed = ", ".join(f"s{r['seed']}: {r['eval_mean']:,.1f}" for r in runs)
        late = np.array([late_by_run[r["path"]] for r in runs])
        sps = statistics.median(r["steps_per_sec"] for r in runs if r["steps_per_sec"])
        wall = statistics.median(r["train_seconds"] for r in runs if r["train_seconds"])
        lines.append(f"| {env} | `{variant}` | `{commit[:12]}` | {len(runs)} | {xs.mean():,.1f} ± "
                     f"{xs.std():,.1f} | {per_seed} | {late.mean():,.1f} ± {late.std():,.1f} "
                     f"| {sps:,.0f} | {wall:,.0f} s |")  # fmt: skip
    return lines


# The MinAtar paper's DQN at 5M frames (Young & Tian 2019; training return over the final 500k
# frames, ε = 0.1 exploration included), as an independent DQN reproduction read them off the
# paper's figure (the paper gives curves only; docs/benchmarks.md, "Against the MinAtar paper").
PAPER_DQN = {"MinAtar/Breakout-v0": 10.0, "MinAtar/Freeway-v0": 50.5,
             "MinAtar/SpaceInvaders-v0": 45.0, "MinAtar/Asterix-v0": 16.5}  # fmt: skip


PAPER_NOTE = (
    "Against the MinAtar paper's DQN at 5M frames (`PAPER_DQN` in benchmarks/pomdp_report.py; "
    'the source and how to read it: "Against the MinAtar paper" above):'
)


def paper_table(
    gs: dict[Group, list[dict[str, Any]]], root: Path, late_by_run: dict[str, float]
) -> list[str]:
    """TRPO's preset runs on the paper's games (the runs of 5M steps, one row per commit) against
    the paper's DQN: the same measure (training return at the end) and the deterministic evaluation."""
    lines = [
        "| env | commit | DQN, paper (≈) | TRPO training return, last 10 % of steps: mean (per seed) "
        "| TRPO deterministic evaluation: mean (per seed) | seeds above DQN (training return) |",
        "|---|---|---|---|---|---|",
    ]
    for (env, variant, commit), runs in gs.items():
        if variant != "preset" or env not in PAPER_DQN:
            continue
        steps = {json.loads((root / r["path"] / "config.json").read_text())["steps"] for r in runs}
        if steps != {5_000_000}:
            continue
        late = [late_by_run[r["path"]] for r in runs]
        ev = [r["eval_mean"] for r in runs]
        above = sum(x > PAPER_DQN[env] for x in late)
        lines.append(f"| {env} | `{commit[:12]}` | {PAPER_DQN[env]:g} | {np.mean(late):,.1f} "
                     f"({', '.join(f'{x:,.1f}' for x in late)}) | {np.mean(ev):,.1f} "
                     f"({', '.join(f'{x:,.1f}' for x in ev)}) | {above} of {len(runs)} |")  # fmt: skip
    return lines if len(lines) > 2 else []


def figure(gs: dict[Group, list[dict[str, Any]]], runs: Path, out: Path) -> None:
    """Training return against env steps: mean over seeds, band from the lowest to the highest seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from suite_index import curves_on_grid  # type: ignore[import-not-found]

    envs = sorted({env for env, _, _ in gs})
    fig, axes = plt.subplots(1, len(envs), figsize=(4.4 * len(envs), 3.3), squeeze=False)
    for ax, env in zip(axes[0], envs, strict=True):
        for (e, variant, _), group in gs.items():
            if e != env:
                continue
            grid, ys = curves_on_grid(runs, group)
            ax.plot(grid, ys.mean(0), label=f"{variant} ({len(ys)} seeds)")
            ax.fill_between(grid, ys.min(0), ys.max(0), alpha=0.2)
        ax.set_title(env, fontsize=9)
        ax.set_xlabel("env steps")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("training return")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def commands(gs: dict[Group, list[dict[str, Any]]], root: Path, suite: str) -> list[str]:
    """The suite command of every group, with the steps its runs' config.json asked for."""
    lines = []
    for (env, variant, _), runs in gs.items():
        seeds = ",".join(str(r["seed"]) for r in runs)
        # The variant's fields but steps, which --steps gives (suite.py names the variant by it).
        pairs = [] if variant == "preset" else re.split(r",(?=[a-z_]+=)", variant)
        pairs = [p for p in pairs if not p.startswith("steps=")]
        sets = f" --set {' '.join(pairs)}" if pairs else ""
        steps = json.loads((root / runs[0]["path"] / "config.json").read_text())["steps"]
        lines.append(f"    python benchmarks/suite.py run --suite {suite} --envs {env} --seeds {seeds} "
                     f"--steps {steps}{sets}")  # fmt: skip
    return sorted(set(lines))


def write(runs: Path, docs: Path, suite: str = SUITE) -> None:
    index = json.loads((runs / "index.json").read_text())
    gs = groups(index, suite)
    late = late_returns(gs, runs)
    body = [
        "Generated by `python benchmarks/suite.py index && python benchmarks/pomdp_report.py",
        f"--suite {suite}` from bench-runs/index.json; do not edit by hand. Final return: deterministic",
        "evaluation, 10 episodes, after the last update. Training return, last 10 % of steps: the",
        "sampled policy's return over the episodes that ended in the run's last tenth (each update's",
        "mean weighted by its episodes), mean ± std over seeds, what a learning curve shows at its end.",
        "The band in the figure spans the lowest and highest seed.",
        "",
        *table(gs, late),
        "",
        *([PAPER_NOTE, "", *paper, ""] if (paper := paper_table(gs, runs, late)) else []),
        f"![training curves](figures/{suite}_curves.png)",
        "",
        "Commands (each run's manifest.json records its own):",
        "",
        *commands(gs, runs, suite),
    ]
    if gs:
        figure(gs, runs, docs / "figures" / f"{suite}_curves.png")
    doc = docs / "benchmarks.md"
    text = doc.read_text()
    mark = marks(suite)
    if mark.search(text) is None:
        raise SystemExit(f"{doc}: no <!-- {suite}:start --> ... <!-- {suite}:end --> markers")
    doc.write_text(mark.sub(lambda m: m.group(1) + "\n".join(body) + "\n" + m.group(3), text))
    print(f"wrote the {suite} section of {doc} ({len(gs)} rows)")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    suite = sys.argv[sys.argv.index("--suite") + 1] if "--suite" in sys.argv else SUITE
    write(ROOT / "bench-runs", ROOT / "docs", suite)
