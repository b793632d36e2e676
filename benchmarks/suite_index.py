"""bench-runs/index.json: one entry per run directory under bench-runs/, built from the files
the run wrote (config.json, manifest.json, summary.json, metrics.csv[.gz]); nothing typed by hand.

A run is *attributed* when its manifest names one commit for every session and the code was
committed (``clean``). Runs made before manifests existed (the ``mujoco/``, ``ablations/`` and
``rerun-*`` directories) are indexed as ``attributed: false`` with their layout, so a report can
show them as history but never mixes them into a headline row.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import statistics
from pathlib import Path
from typing import Any

INDEX = "index.json"


def fmt_return(x: float) -> str:
    """A return as the tables show it: whole numbers from 100, one decimal below (Pusher ≈ −27),
    two below 20 (Reacher ≈ −4)."""
    if abs(x) >= 100 or math.isnan(x):
        return f"{x:,.0f}"
    return f"{x:,.1f}" if abs(x) >= 20 else f"{x:,.2f}"


def read_rows(run: Path) -> list[dict[str, float]]:
    """metrics.csv or metrics.csv.gz as numbers (empty or text cells become nan)."""
    plain, packed = run / "metrics.csv", run / "metrics.csv.gz"
    if plain.is_file():
        text = plain.read_text()
    elif packed.is_file():
        text = gzip.decompress(packed.read_bytes()).decode()
    else:
        return []
    rows = []
    for raw in csv.DictReader(io.StringIO(text)):
        row = {}
        for k, v in raw.items():
            try:
                row[k] = float(v) if v not in ("", None) else math.nan
            except ValueError:
                row[k] = math.nan
        rows.append(row)
    return rows


def curve(rows: list[dict[str, float]]) -> tuple[list[float], list[float]]:
    """(env steps, training return), the return carried forward over updates without episodes."""
    xs, ys, last = [], [], math.nan
    for r in rows:
        y = r.get("mean_return", math.nan)
        last = last if math.isnan(y) else y
        if not math.isnan(last):
            xs.append(r["env_steps"])
            ys.append(last)
    return xs, ys


def curves_on_grid(runs: Path, group: list[dict[str, Any]], points: int = 100) -> tuple[Any, Any]:
    """The training curves of ``group``'s runs on one grid of env steps (to the shortest run's end):
    (grid ``[points]``, returns ``[runs, points]``), for plots of a mean with a band."""
    import numpy as np

    curves = [curve(read_rows(runs / r["path"])) for r in group]
    grid = np.linspace(0, min(xs[-1] for xs, _ in curves if xs), points)
    return grid, np.array([np.interp(grid, xs, y) for xs, y in curves if xs])


def late_training_return(rows: list[dict[str, float]], fraction: float = 0.1) -> float:
    """The training return of the episodes that ended in the last ``fraction`` of the run's env
    steps: each update's ``mean_return`` weighted by the episodes it ended (``episodes`` is a running
    count). What learning curves such as the MinAtar paper's show at their end: the return of the
    policy as it still explores, not of a separate deterministic evaluation. nan without episodes."""
    if not rows:
        return math.nan
    start = (1.0 - fraction) * rows[-1]["env_steps"]
    total = weight = 0.0
    before = 0.0
    for r in rows:
        ended = r.get("episodes", math.nan) - before
        before = r.get("episodes", before)
        y = r.get("mean_return", math.nan)
        if r["env_steps"] > start and ended > 0 and not math.isnan(y):
            total += y * ended
            weight += ended
    return total / weight if weight else math.nan


def area_under_curve(xs: list[float], ys: list[float]) -> float:
    """Mean training return over the run: the trapezoid area under the curve / the steps it spans."""
    if len(xs) < 2 or xs[-1] <= xs[0]:
        return math.nan
    area = sum((xs[i + 1] - xs[i]) * (ys[i + 1] + ys[i]) / 2 for i in range(len(xs) - 1))
    return area / (xs[-1] - xs[0])


def layout(rel: Path, config: dict[str, Any]) -> dict[str, Any]:
    """suite, commit directory and variant from the path (the suite layout), or the legacy ones."""
    parts = rel.parts
    if len(parts) == 6 and parts[-1].startswith("s"):  # suite/commit/env/algo/variant/sN
        return {"layout": "suite", "suite": parts[0], "commit_dir": parts[1], "variant": parts[4]}
    if parts[0] == "ablations":  # ablations/<env>__<name>__<algo>__s<seed>
        name = parts[1].split("__")
        return {"layout": "legacy", "suite": "ablations", "commit_dir": None,
                "variant": name[1] if len(name) == 4 else "legacy"}  # fmt: skip
    return {"layout": "legacy", "suite": parts[0], "commit_dir": None, "variant": "legacy-preset"}


def entry(run: Path, root: Path) -> dict[str, Any] | None:
    config = json.loads((run / "config.json").read_text())
    summary_path, manifest_path = run / "summary.json", run / "manifest.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    rows = read_rows(run)
    xs, ys = curve(rows)
    sessions = manifest.get("sessions", [])
    wall = rows[-1].get("wall_time", math.nan) if rows and "wall_time" in rows[-1] else math.nan
    wall = wall if math.isfinite(wall) else summary.get("train_seconds", math.nan)
    steps = summary.get("env_steps") or (xs[-1] if xs else 0)
    e = {
        "path": str(run.relative_to(root)),
        **layout(run.relative_to(root), config),
        "env": config.get("env"), "algo": config.get("algo"), "seed": config.get("seed"),
        "finished": bool(summary), "env_steps": steps,
        "eval_mean": summary.get("eval_mean"), "eval_std": summary.get("eval_std"),
        # The median of the final evaluation's episodes: one failed episode moves the mean, not this.
        "eval_median": statistics.median(summary["eval_returns"]) if summary.get("eval_returns") else None,
        "final_train_return": ys[-1] if ys else None, "auc": area_under_curve(xs, ys),
        # Training episodes cut at this many steps: the curve and its area are of those episodes.
        "train_time_limit": config.get("train_time_limit"),
        "train_seconds": wall, "steps_per_sec": steps / wall if wall and math.isfinite(wall) else None,
        "commit": manifest.get("commit"), "clean": manifest.get("clean", False),
        "attributed": bool(manifest.get("commit")) and bool(manifest.get("clean")),
        "sessions": len(sessions),
        "started": sessions[0]["started"] if sessions else None,
        "cpu": sessions[0]["machine"]["cpu"] if sessions else None,
        # Since fb82dab: one CPU name can hide processors that round differently (reliability.md).
        "cpu_features": sessions[0]["machine"].get("cpu_features") if sessions else None,
        "software": (sessions[-1]["software"] if sessions else summary.get("software")),
        "command": sessions[0]["command"] if sessions else None,
        "config_hash": sessions[0]["config_hash"] if sessions else None,
    }  # fmt: skip
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in e.items()}


def build_index(root: Path) -> list[dict[str, Any]]:
    runs = sorted({c.parent for c in root.rglob("config.json") if "checkpoints" not in c.parts})
    out = [e for run in runs if (e := entry(run, root)) is not None]

    def key(e: dict[str, Any]) -> tuple[Any, ...]:
        return (e["suite"], e["env"] or "", e["algo"] or "", e["variant"], e["seed"] or 0)

    return sorted(out, key=key)


def write_index(root: Path) -> Path:
    index = build_index(root)
    path = root / INDEX
    path.write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")
    attributed = sum(e["attributed"] for e in index)
    print(f"wrote {path}: {len(index)} runs, {attributed} attributed to a commit, "
          f"{len(index) - attributed} not (legacy or uncommitted)")  # fmt: skip
    return path
