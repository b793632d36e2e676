"""docs/benchmarks.md's generated section and figures, from bench-runs/index.json only.

Statistics with rliable (Agarwal et al. 2021; ``pip install -e .[bench]``): for each env and
algorithm, the mean and the interquartile mean (IQM) of the seeds' final deterministic evaluation
and of the area under the training curve, with 95 % stratified-bootstrap intervals; across the
suite, IQM of the scores normalised by each env's target and performance profiles.

A headline row holds attributed runs only (manifest: one commit, committed code), finished,
the ``preset`` variant, and one commit: the one with the most finished seeds for that env and
algorithm (the newest on a tie). Everything else is listed separately, never averaged in.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from suite_index import fmt_return as _n  # type: ignore[import-not-found]  # benchmarks/

#: Issue 23's targets: TRPO at 1M steps, mean over ten seeds, and where each comes from.
TARGETS: dict[str, tuple[float, str]] = {
    "Hopper-v5": (3740, "HF sb3 TRPO model 3740 ± 4 (MuJoCo v3)"),
    "Walker2d-v5": (4933, "RL Zoo TRPO 4933 (v3)"),
    "HalfCheetah-v5": (4674, "HF sb3 TRPO model 4674 ± 60 (v3)"),
    "Ant-v5": (4982, "RL Zoo TRPO 4982 (v3)"),
    "Swimmer-v5": (366, "RL Zoo TRPO 366 (v3)"),
    "Humanoid-v5": (1000, "issue 23 (Tianshou TRPO best mean point 810)"),
    "InvertedDoublePendulum-v5": (9300, "issue 23 (Tianshou TRPO ≈ 8435, NPG 9243)"),
    "InvertedPendulum-v5": (1000, "the maximum (Tianshou TRPO 1000)"),
    # the best published TRPO number found: openai/baselines benchmarks_mujoco1M.htm (trpo_mpi, 2018,
    # gym v2, statistic not defined, curves "avg. 6 seeds"); Tianshou's TRPO: −5.1 ± 0.8 (Reacher-v2,
    # the best point of the 10-seed mean curve in 1M steps, examples/mujoco/README.md @1da9b86)
    "Reacher-v5": (-4.82, "OpenAI Baselines trpo_mpi −4.82 (v2; Tianshou TRPO best point −5.1)"),
}
#: Envs of the suite with no published TRPO number found, and what was searched (issue 23 asks
#: for the best one found, cited). Their rows have no target; the note says why.
NO_TARGET: dict[str, str] = {
    "Pusher-v5": "RL Zoo has no TRPO settings or agent for it (hyperparams/trpo.yml); Tianshou's "
    "MuJoCo benchmark covers 9 of the 13 envs, not this one; OpenAI Baselines' 1M-step table "
    "neither. Published numbers for other algorithms, one seed each on Pusher-v4: CleanRL DDPG "
    "−30.52 ± 2.85, SB3 A2C −42.25 ± 2.95 (Hugging Face model cards)",
    "HumanoidStandup-v5": "not in RL Zoo's TRPO settings, Tianshou's MuJoCo benchmark (its README: "
    "HumanoidStandup is not supported) or OpenAI Baselines' 1M-step table; the MDPO paper (Tomar "
    "et al. 2020, arXiv 2005.09814) runs TRPO on HumanoidStandup-v2, by secondary notes at 10M "
    "steps, but its table could not be read here, so no number is cited",
}
#: The suite this report is about.
SUITE = "mujoco-v5"
MARK = re.compile(r"(<!-- suite:start[^\n]*-->\n)(.*?)(<!-- suite:end -->)", re.S)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """NumPy's global generator seeded for the block, then restored. rliable 1.2's bootstrap draws
    its resamples with ``np.random.choice`` and ignores the ``random_state`` it passes to arch, so
    without this the intervals changed each time the report was regenerated."""
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(saved)


def interval(scores: np.ndarray, reps: int, seed: int = 0) -> dict[str, tuple[float, float, float]]:
    """{"mean"|"iqm": (point, low, high)} for ``scores`` [runs, tasks], 95 % stratified bootstrap."""
    from rliable import library as rly
    from rliable import metrics

    def agg(x: np.ndarray) -> np.ndarray:
        return np.array([metrics.aggregate_mean(x), metrics.aggregate_iqm(x)])

    with seeded(seed):
        point, ci = rly.get_interval_estimates(
            {"x": scores}, agg, reps=reps, random_state=np.random.RandomState(seed)
        )  # fmt: skip
    p, c = point["x"], ci["x"]
    return {"mean": (p[0], c[0, 0], c[1, 0]), "iqm": (p[1], c[0, 1], c[1, 1])}


def headline_groups(index: list[dict[str, Any]]) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    """(suite, env, algo) -> the finished, attributed preset runs of the commit with most seeds."""
    Runs = list[dict[str, Any]]
    by_commit: dict[tuple[str, str, str], dict[str, Runs]] = defaultdict(lambda: defaultdict(list))
    for e in index:
        ok = e["layout"] == "suite" and e["attributed"] and e["finished"] and e["variant"] == "preset"
        ok = ok and e["suite"] == SUITE  # other suites have their own reports (pomdp_report.py)
        if ok and e["eval_mean"] is not None:
            by_commit[(e["suite"], e["env"], e["algo"])][e["commit"]].append(e)
    out = {}
    for key, commits in by_commit.items():
        best = max(commits.values(), key=lambda runs: (len(runs), max(r["started"] or "" for r in runs)))
        out[key] = sorted(best, key=lambda r: r["seed"])
    return out


def _target(env: str, target: float) -> str:
    """The target cell: the number, "none found" (NO_TARGET, said below the table) or "–"."""
    if not math.isnan(target):
        return _n(target)
    return "none found" if env in NO_TARGET else "–"


def reached(runs: list[dict[str, Any]], target: float) -> str:
    """The target's mark: ✓ when the mean over seeds is at or above it, else ✗, and how many seeds
    reached it alone (", 4/10 seeds ≥"): the published targets are single agents, a row is a mean."""
    if math.isnan(target):
        return ""
    xs = [r["eval_mean"] for r in runs]
    mark = "✓" if float(np.mean(xs)) >= target else "✗"
    return f" {mark}, {sum(x >= target for x in xs)}/{len(xs)} seeds ≥"


def _fmt(p: tuple[float, float, float]) -> str:
    return f"{_n(p[0])} [{_n(p[1])}, {_n(p[2])}]"


def _half(runs: list[dict[str, Any]], lo: int, hi: int) -> str:
    xs = [r["eval_mean"] for r in runs if lo <= r["seed"] <= hi]
    return f"{_n(float(np.mean(xs)))} (n={len(xs)})" if xs else "–"


def cpus(runs: list[dict[str, Any]]) -> str:
    """The CPU models a row's runs ran on, with their counts ("Intel Xeon ×9, AMD EPYC ×1"), and
    their features where recorded ("AMD EPYC (AVX2, flags ecfefe0f) ×3"). The same commit and seed
    on two CPUs are two different runs: float rounding differs from the first update on
    (docs/benchmarks.md), so a row is a sample over seeds and the machines named."""
    names: dict[str, int] = defaultdict(int)
    for r in runs:
        cpu = re.sub(r"\((R|TM)\)|\b(Processor|CPU)\b", "", r.get("cpu") or "not recorded")
        features = f" ({r['cpu_features']})" if r.get("cpu_features") else ""
        names[" ".join(cpu.split()) + features] += 1
    return ", ".join(f"{name} ×{n}" for name, n in sorted(names.items(), key=lambda kv: (-kv[1], kv[0])))


def cut_at(runs: list[dict[str, Any]]) -> str:
    """The ``train_time_limit`` the runs trained with ("200", or "200/500" if they differ), or "":
    their training curve and its area are of the cut episodes, not comparable with the final
    evaluation (which keeps the env's own limit)."""
    return "/".join(map(str, sorted({r["train_time_limit"] for r in runs if r.get("train_time_limit")})))


def tables(groups: dict[tuple[str, str, str], list[dict[str, Any]]], reps: int) -> list[str]:
    lines = [
        "| suite | env | algo | commit | seeds | final eval mean ± std | mean [95 % CI] | IQM [95 % CI] "
        "| seeds 0–4 | seeds 5–9 | target | AUC IQM [95 % CI] | steps/s | wall (min) | CPU |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    seed_lines = [
        "| env | algo | commit | the seeds' median episodes, mean | final evaluation per seed "
        "| training time per seed, min (steps/s) |",
        "|---|---|---|---|---|---|",
    ]
    for (suite, env, algo), runs in sorted(groups.items()):
        final = np.array([[r["eval_mean"]] for r in runs])
        ci = interval(final, reps)
        aucs = np.array([[r["auc"]] for r in runs if r["auc"] is not None])
        auc = _fmt(interval(aucs, reps)["iqm"]) if len(aucs) else "–"
        if cut := cut_at(runs):
            auc += f" (training episodes cut at {cut} steps)"
        target, _ = TARGETS.get(env, (math.nan, ""))
        sps = np.median([r["steps_per_sec"] for r in runs if r["steps_per_sec"]])
        wall = np.median([r["train_seconds"] for r in runs if r["train_seconds"]]) / 60
        lines.append(
            f"| {suite} | {env} | {algo} | `{runs[0]['commit'][:12]}` | {len(runs)} "
            f"| {_n(final.mean())} ± {_n(final.std())} | {_fmt(ci['mean'])} | {_fmt(ci['iqm'])} "
            f"| {_half(runs, 0, 4)} | {_half(runs, 5, 9)} | {_target(env, target)}{reached(runs, target)} "
            f"| {auc} "
            f"| {sps:,.0f} | {wall:.1f} | {cpus(runs)} |"
        )
        per_seed = ", ".join(f"s{r['seed']}: {_n(r['eval_mean'])}" for r in runs)
        seed_lines.append(
            f"| {env} | {algo} | `{runs[0]['commit'][:12]}` | {median_of_seeds(runs)} | {per_seed} "
            f"| {times_of_seeds(runs)} |"
        )
    return [*lines, "", *seed_lines]


def times_of_seeds(runs: list[dict[str, Any]]) -> str:
    """Each seed's training time in minutes and its steps per second, as its run measured them
    ("–" for a run that recorded no time)."""

    def one(r: dict[str, Any]) -> str:
        t, sps = r.get("train_seconds"), r.get("steps_per_sec")
        if not t or not math.isfinite(t):
            return f"s{r['seed']}: –"
        return f"s{r['seed']}: {t / 60:.1f}" + (f" ({sps:,.0f})" if sps else "")

    return ", ".join(one(r) for r in runs)


def median_of_seeds(runs: list[dict[str, Any]]) -> str:
    """The mean over seeds of each seed's median evaluation episode ("–" if a run did not keep its
    episodes): next to the mean, what single failed episodes cost it (a fall, a stand-still)."""
    medians = [r.get("eval_median") for r in runs]
    return "–" if any(m is None for m in medians) else _n(float(np.mean(medians)))


def curves_figure(groups: dict[tuple[str, str, str], list[dict[str, Any]]], runs: Path, out: Path) -> None:
    """Training return against env steps per env: the mean over seeds with a 95 % stratified-
    bootstrap band (each grid point a task), one line per algorithm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from rliable import library as rly
    from suite_index import curves_on_grid  # type: ignore[import-not-found]

    envs = sorted({env for _, env, _ in groups})
    fig, axes = plt.subplots(1, len(envs), figsize=(4.2 * len(envs), 3.2), squeeze=False)
    for ax, env in zip(axes[0], envs, strict=True):
        for (_, e, algo), group in sorted(groups.items()):
            if e != env:
                continue
            grid, ys = curves_on_grid(runs, group)
            with seeded(0):
                point, ci = rly.get_interval_estimates(
                    {"c": ys}, lambda x: x.mean(axis=0), reps=2000, random_state=np.random.RandomState(0)
                )  # fmt: skip
            cut = f", episodes cut at {c} steps" if (c := cut_at(group)) else ""
            ax.plot(grid, point["c"], label=f"{algo} ({len(ys)} seeds{cut})")
            ax.fill_between(grid, ci["c"][0], ci["c"][1], alpha=0.25)
        if env in TARGETS:
            ax.axhline(TARGETS[env][0], color="grey", lw=0.8, ls="--")
        ax.set_title(env)
        ax.set_xlabel("env steps")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("training return")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def profile_figure(groups: dict[tuple[str, str, str], list[dict[str, Any]]], out: Path) -> None:
    """Performance profiles (rliable): the fraction of runs whose final evaluation, divided by
    the env's target, is above τ; across the envs with a target, equal seeds per env."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from rliable import library as rly

    by_algo: dict[str, dict[str, list[float]]] = defaultdict(dict)
    for (_, env, algo), group in groups.items():
        if env in TARGETS and TARGETS[env][0] > 0:  # a ratio to a negative target means nothing
            by_algo[algo][env] = [r["eval_mean"] / TARGETS[env][0] for r in group]
    taus = np.linspace(0.0, 1.2, 121)
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    for algo, per_env in sorted(by_algo.items()):
        n = min(len(v) for v in per_env.values())
        scores = np.array([v[:n] for _, v in sorted(per_env.items())]).T  # [runs, envs]
        with seeded(0):
            profile, ci = rly.create_performance_profile({algo: scores}, taus)
        ax.plot(taus, profile[algo], label=f"{algo} ({len(per_env)} envs × {n} seeds)")
        ax.fill_between(taus, ci[algo][0], ci[algo][1], alpha=0.25)
    ax.set_xlabel("final evaluation / target (τ)")
    ax.set_ylabel("fraction of runs > τ")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def variants(index: list[dict[str, Any]], headline: dict[tuple[str, str, str], str]) -> list[str]:
    """Attributed, finished suite runs outside the headline rows: variants of the preset, and the
    preset at other commits (e.g. before a preset change): what was tried and why."""
    groups: dict[tuple[str, str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for e in index:
        chosen = headline.get((e["suite"], e["env"], e["algo"]))
        other = e["variant"] != "preset" or e["commit"] != chosen
        ok = e["layout"] == "suite" and e["attributed"] and e["finished"] and other and e["suite"] == SUITE
        if ok and e["eval_mean"] is not None:
            groups[(e["env"], e["algo"], e["variant"], e["commit"])].append(e)
    lines = ["| env | algo | variant | commit | seeds | mean ± std | seeds 0–4 | seeds 5–9 | per seed |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for (env, algo, variant, commit), runs in sorted(groups.items()):
        runs.sort(key=lambda r: r["seed"])
        xs = np.array([r["eval_mean"] for r in runs])
        per_seed = ", ".join(f"s{r['seed']}: {_n(r['eval_mean'])}" for r in runs)
        halves = f"{_half(runs, 0, 4)} | {_half(runs, 5, 9)}"
        lines.append(f"| {env} | {algo} | `{variant}` | `{commit[:12]}` | {len(runs)} "
                     f"| {_n(xs.mean())} ± {_n(xs.std())} | {halves} | {per_seed} |")  # fmt: skip
    return lines


def unattributed(index: list[dict[str, Any]]) -> list[str]:
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for e in index:
        if e["layout"] == "legacy":
            why = "an experiment's own layout (not the suite's)" if e["commit"] else "no manifest"
            counts[(e["suite"], why)] += 1
        elif not e["attributed"]:
            counts[(e["suite"], "uncommitted or mixed code")] += 1
    lines = ["| directory | runs | why they are not in a headline row |", "|---|---|---|"]
    lines += [f"| bench-runs/{s}/ | {n} | {why} |" for (s, why), n in sorted(counts.items())]
    return lines


def write_report(runs: Path, docs: Path, reps: int) -> None:
    index = json.loads((runs / "index.json").read_text())
    groups = headline_groups(index)
    body = [
        "Generated by `python benchmarks/suite.py index && python benchmarks/suite.py report` from",
        "bench-runs/index.json; do not edit by hand. Final evaluation: deterministic, 10 episodes,",
        f"after the run's last update; intervals: 95 % stratified bootstrap (rliable), {reps:,} resamples.",
        "In the per-seed table, each seed's median evaluation episode averaged over the seeds: level",
        "with the mean when each seed's episodes are alike, above it when single episodes failed (a",
        "fall; on Ant also standing still or lying on its back), below it when single ones ran far better.",
        "Its last column is each run's training time (its updates, as metrics.csv's wall_time has them;",
        "evaluations not included) and steps per second, on the CPU the first table names. The target",
        "column marks the mean over seeds against the target (✓ at or above, ✗ below) and counts the",
        "seeds whose own final evaluation reached it: the published targets are single agents.",
        "",
        *tables(groups, reps),
        "",
        "Targets: " + "; ".join(f"{env} {_n(t)} ({src})" for env, (t, src) in TARGETS.items()) + ".",
        "No published TRPO number found: "
        + "; ".join(f"{env}: {why}" for env, why in NO_TARGET.items())
        + ".",
        "",
        "![curves](figures/suite_curves.png)",
        "",
        "![performance profile](figures/suite_profile.png)",
        "",
        "Variants (the preset plus the changes in their name) and the preset at other commits, kept",
        "out of the headline rows:",
        "",
        *variants(index, {key: runs[0]["commit"] for key, runs in groups.items()}),
        "",
        "Runs kept out of every headline row:",
        "",
        *unattributed(index),
    ]
    if groups:
        curves_figure(groups, runs, docs / "figures" / "suite_curves.png")
        profile_figure(groups, docs / "figures" / "suite_profile.png")
    doc = docs / "benchmarks.md"
    text = doc.read_text()
    if MARK.search(text) is None:
        raise SystemExit(f"{doc}: no <!-- suite:start --> ... <!-- suite:end --> markers")
    doc.write_text(MARK.sub(lambda m: m.group(1) + "\n".join(body) + "\n" + m.group(3), text))
    print(f"wrote the generated section of {doc} ({len(groups)} headline rows)")
