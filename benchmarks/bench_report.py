"""Aggregate bench-runs/mujoco/<env>/<algo>/s<seed>/ into docs/benchmarks.md and a curve plot."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np

from trustpg.config.presets import PRESETS, preset_overrides
from trustpg.config.train_config import TrainConfig
from trustpg.io.logger import metrics_file, read_metrics
from trustpg.io.plotting import plot_runs

CMD = "python benchmarks/mujoco_bench.py"


def collect(runs: Path) -> dict[tuple[str, str], list[dict]]:
    out: dict[tuple[str, str], list[dict]] = {}
    for summary in sorted(runs.glob("*/*/s*/summary.json")):
        run = summary.parent
        env, algo = run.parent.parent.name, run.parent.name
        s = json.loads(summary.read_text())
        config = json.loads((run / "config.json").read_text()) if (run / "config.json").exists() else {}
        if config.get("critic_process") and "peak_rss_critic_worker_mb" not in s:
            # Made with the critic worker before its own peak was recorded (commit fb4f04e): their
            # peak_rss_mb is the parent's alone (22a2099..2b9b127) or adds RUSAGE_CHILDREN, which
            # counts the parent's image the worker had between fork and exec (2b9b127..fb4f04e).
            s["peak_rss_mb"] = None
        s["wall"] = _wall_time(run, s["train_seconds"])
        s["seed"] = int(run.name[1:])
        s["run"] = run
        out.setdefault((env, algo), []).append(s)
    return {key: sorted(rows, key=lambda r: r["seed"]) for key, rows in out.items()}  # s2 before s10


def _wall_time(run: Path, fallback: float) -> float:
    """Training wall time over all segments of a run: the last ``wall_time`` of metrics.csv (kept
    across resumes in the checkpoint). summary.json's ``train_seconds`` is the same now, but in runs
    recorded before December 2026's fix it counted a resumed run's last segment alone."""
    path = metrics_file(run)
    rows = read_metrics(path) if path is not None else []
    wall = rows[-1].get("wall_time") if rows else None
    return float(wall) if isinstance(wall, float) and math.isfinite(wall) else fallback


def write_report(runs: Path, doc: Path, fig: Path, targets: dict) -> None:
    data = collect(runs)
    lines = [
        "## MuJoCo learning, earlier runs (1M environment steps per run; no manifests)",
        "",
        "Deterministic evaluation return (10 episodes) of the final policy; mean ± std across seeds,",
        "then the per-seed numbers. Wall time and steps/s are per run, measured on this 2-core",
        "machine while other jobs shared it, so they are indicative only (see docs/performance.md for",
        "controlled throughput ratios). trustpg runs: `trustpg train --preset mujoco --env ENV",
        "--algo ALGO --seed S`; sb3-trpo: sb3-contrib TRPO with the RL Zoo hyperparameters",
        "(benchmarks/sb3_runner.py).",
        "",
        f"Reproduce: `{CMD} run --envs ENV... --algos trpo npg vpg sb3-trpo --seeds 0 1 2 3 4`, then",
        f"`{CMD} report`.",
        "",
        "| env | algo | seeds | final return (mean ± std) | target | per-seed | wall time (s) | steps/s "
        "| peak RSS (MiB) | MuJoCo |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (env, algo), rows in sorted(data.items()):
        rets = [r["eval_mean"] for r in rows]
        secs = [r["wall"] for r in rows]
        tgt = targets.get(env)
        target = (
            ""
            if tgt is None
            else (f"≥ {tgt[0]}" if "trpo" in algo else f"≥ {tgt[2]}" if algo == "npg" else "")
        )
        met, digits = "", 0
        if target and algo in ("trpo", "npg"):
            bar = tgt[0] if algo == "trpo" else tgt[2]
            # One decimal where rounding would hide which side of the target the mean is on.
            digits = 1 if abs(np.mean(rets) - bar) < 1 else 0
            if np.mean(rets) < bar:
                met = " ❌"
            else:
                met = " ✅" if len(rows) >= 5 else " (met on fewer than 5 seeds)"
        per_seed = ", ".join(f"s{r['seed']}: {r['eval_mean']:.0f}" for r in rows)
        sps = [r["env_steps"] / r["wall"] for r in rows]
        rss = [r["peak_rss_mb"] for r in rows if r.get("peak_rss_mb")]
        rss_text = f"{np.median(rss):.0f}" if rss else "–"
        mean_std = f"{np.mean(rets):.{digits}f} ± {np.std(rets):.{digits}f}"
        lines.append(
            f"| {env} | {algo} | {len(rows)} | {mean_std} | {target}{met} | "
            f"{per_seed} | {np.median(secs):.0f} | {np.median(sps):,.0f} | {rss_text} | {_stack(rows)} |"
        )
    lines += ["", "Published reference numbers at 1M steps (not measured here):", ""]
    lines += [f"- {env}: best published TRPO {ref}" for env, (_, ref, _) in targets.items()]
    lines += ["", f"![learning curves](figures/{fig.name})", ""]
    lines += _ablations(runs.parent / "ablations")
    doc.parent.mkdir(parents=True, exist_ok=True)
    start, marker = "<!-- mujoco-report-start -->", "<!-- mujoco-report-end -->"
    before, rest = "# Benchmarks\n\n", ""
    if doc.exists() and marker in doc.read_text():
        text = doc.read_text()
        before = text.split(start, 1)[0] if start in text else before
        rest = text.split(marker, 1)[1]
    doc.write_text(before + start + "\n" + "\n".join(lines) + "\n" + marker + rest)
    _plot(data, fig)


def _stack(rows: list[dict]) -> str:
    """The MuJoCo release of each run (summary.json records it since this session; older runs
    were made with an earlier, unrecorded release), with counts when the seeds differ."""
    names = [r.get("software", {}).get("mujoco", "earlier") for r in rows]
    counts = {n: names.count(n) for n in dict.fromkeys(names)}
    return names[0] if len(counts) == 1 else ", ".join(f"{n} ×{k}" for n, k in counts.items())


ABLATION_KEYS = ("num_envs", "steps_per_env", "gamma", "gae_lambda", "log_std_init", "max_kl",
                 "max_kl_final", "fvp_stride", "vf_hidden_sizes", "env_kwargs")  # fmt: skip
# Shown only where the run differs from the mujoco preset's common settings or its env's preset.
ABLATION_KEYS_IF_CHANGED = ("hidden_sizes", "cg_iters", "damping", "vf_epochs", "vf_lr")


def _as_stored(overrides: dict) -> dict:
    """TrainConfig's defaults with ``overrides``, as config.json stores them (tuples as lists)."""
    return json.loads(json.dumps({**asdict(TrainConfig()), **overrides}, default=str))


_DEFAULTS = _as_stored(PRESETS["mujoco"]["common"])


def _settings(config: dict, env: str) -> str:
    env_preset = _as_stored(preset_overrides("mujoco", env))
    shown = [k for k in ABLATION_KEYS if k in config and config[k] not in (None, "{}")]
    present = [k for k in ABLATION_KEYS_IF_CHANGED if k in config]
    shown += [k for k in present if config[k] != _DEFAULTS[k] or config[k] != env_preset[k]]
    return ", ".join(f"{k}={config[k]}" for k in shown)


def _ablations(root: Path) -> list[str]:
    """One row per variant in bench-runs/ablations/<env>__<variant>[__<algo>]__s<seed>/."""
    groups: dict[str, list[tuple[int, dict, dict]]] = {}
    for summary in sorted(root.glob("*/summary.json")):
        run = summary.parent
        name, seed = run.name.rsplit("__s", 1)
        config = json.loads((run / "config.json").read_text())
        groups.setdefault(name, []).append((int(seed), json.loads(summary.read_text()), config))
    groups = {name: sorted(rows, key=lambda row: row[0]) for name, rows in groups.items()}
    if not groups:
        return []
    lines = ["### Ablations (`bench-runs/ablations/`)", "",
             "Variants tried against the preset; the runs the notes below refer to. Settings shown are",
             "the run's own (`config.json`). Reproduce one: `python benchmarks/mujoco_bench.py run",
             "--envs ENV --algos ALGO --seeds S --variant NAME --set KEY=VALUE ...` with the settings that",
             "differ from the preset (`src/trustpg/config/presets.py`).", "",
             "| variant | algo | seeds | final return (mean ± std) | per-seed | settings | MuJoCo |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, rows in groups.items():
        rets = [r["eval_mean"] for _, r, _ in rows]
        config = rows[0][2]
        settings = _settings(config, name.split("__")[0])
        per_seed = ", ".join(f"s{seed}: {r['eval_mean']:.0f}" for seed, r, _ in rows)
        lines.append(f"| {name} | {config['algo']} | {len(rows)} | {np.mean(rets):.0f} ± {np.std(rets):.0f} "
                     f"| {per_seed} | {settings} | {_stack([r for _, r, _ in rows])} |")  # fmt: skip
    return [*lines, ""]


def _plot(data: dict[tuple[str, str], list[dict]], fig_path: Path) -> None:
    """Learning curves of the finished runs, grouped by (env, algo) from their config.json."""
    runs = [r["run"] for rows in data.values() for r in rows]
    if runs:
        plot_runs(runs, fig_path, x="env_steps", y="mean_return")
