"""One writer for per-update statistics: CSV (for plots), TensorBoard, and the console."""

from __future__ import annotations

import csv
import gzip
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trustpg.config.train_config import usable_cores
from trustpg.io.record import COLUMNS

#: Packages whose versions decide a run's numbers (MuJoCo and Gymnasium releases change the
#: simulation in the last bits, which moves a seeded run; docs/benchmarks.md).
VERSIONED = ("trustpg", "torch", "numpy", "gymnasium", "mujoco", "envpool", "ray")


def software_versions() -> dict[str, str]:
    """Python, the versions of :data:`VERSIONED` (those present) and the usable cores, written
    into each run's summary.json so a result can be traced to the stack that made it.

    A package already imported reports its own ``__version__``: that is the build that ran.
    PyPI's CUDA wheels of torch say ``2.14.1`` in their metadata but ``2.14.1+cu130`` in
    ``torch.__version__``, and the CPU and CUDA builds of one release compute differently.
    """
    import platform
    import sys
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in VERSIONED:
        own = getattr(sys.modules.get(name), "__version__", None)
        if isinstance(own, str) and own:
            out[name] = own
            continue
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    out["cores"] = str(usable_cores())
    return out


class MetricsLogger:
    """Appends one row per update to ``metrics.csv`` and mirrors numbers to TensorBoard."""

    def __init__(self, run_dir: Path, tensorboard: bool = True, append: bool = False) -> None:
        self.path = run_dir / "metrics.csv"
        run_dir.mkdir(parents=True, exist_ok=True)
        new_file = not (append and self.path.exists())
        if not new_file:
            _upgrade_header(self.path)
        self._file = open(self.path, "w" if new_file else "a", newline="")  # noqa: SIM115
        self._csv = csv.DictWriter(self._file, fieldnames=COLUMNS, extrasaction="raise")
        if new_file:
            self._csv.writeheader()
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(run_dir / "tb"))

    def write(self, row: Mapping[str, Any]) -> None:
        self._csv.writerow({k: _fmt(row.get(k, "")) for k in COLUMNS})
        self._file.flush()
        if self._tb is not None:
            step = int(row["env_steps"])
            for k, v in row.items():
                if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
                    self._tb.add_scalar(f"trustpg/{k}", v, step)

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def _upgrade_header(path: Path) -> None:
    """Rewrite a metrics.csv written by a version with other columns (a run resumed after an
    upgrade) to :data:`COLUMNS`, keeping every cell under its name (new columns empty; columns
    this version no longer writes are dropped). Atomic; a no-op when the header matches."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or list(reader.fieldnames) == COLUMNS:
            return
        rows = list(reader)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore", restval="")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return v


def metrics_file(run: Path) -> Path | None:
    """A run's metrics.csv, or its compressed metrics.csv.gz (benchmarks keep those), or None."""
    for name in ("metrics.csv", "metrics.csv.gz"):
        if (run / name).is_file():
            return run / name
    return None


def read_metrics(path: Path) -> list[dict[str, float | str]]:
    """Rows of a metrics.csv (or metrics.csv.gz) with numbers parsed (empty cells become nan)."""
    rows = []
    opener: Any = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as f:
        for raw in csv.DictReader(f):
            row: dict[str, float | str] = {}
            for k, v in raw.items():
                try:
                    row[k] = float(v) if v != "" else math.nan
                except ValueError:
                    row[k] = v
            rows.append(row)
    return rows


def drop_rows_after(path: Path, update: int) -> int:
    """Remove rows logged after ``update`` (written after the checkpoint a run resumes from, e.g.
    before a ``kill -9``), so the resumed log has each update once. Atomic; returns rows dropped."""
    if not path.is_file():
        return 0
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        rows = list(reader)
    if header is None or "update" not in header:
        return 0
    col = header.index("update")
    keep = [r for r in rows if len(r) == len(header) and r[col].isdigit() and int(r[col]) <= update]
    if len(keep) == len(rows):
        return 0
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(keep)
    os.replace(tmp, path)
    return len(rows) - len(keep)
