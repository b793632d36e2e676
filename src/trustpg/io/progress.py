"""A rich progress bar showing steps/s, mean episode return and the last update's KL."""

from __future__ import annotations

import math
from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class TrainProgress:
    """Context manager; ``update(row)`` advances to ``row["env_steps"]``."""

    def __init__(self, total: int, start: int, enabled: bool = True) -> None:
        self.enabled = enabled
        self._progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[sps]} steps/s"),
            TextColumn("return {task.fields[ret]}"),
            TextColumn("KL {task.fields[kl]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            disable=not enabled,
        )
        self._task = self._progress.add_task("train", total=total, completed=start, sps="-", ret="-", kl="-")
        self._last_return = math.nan

    def __enter__(self) -> TrainProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._progress.__exit__(*exc)

    def update(self, row: dict[str, Any]) -> None:
        if not math.isnan(row["mean_return"]):
            self._last_return = row["mean_return"]
        self._progress.update(
            self._task,
            completed=row["env_steps"],
            sps=f"{row['steps_per_sec']:,.0f}",
            ret=f"{self._last_return:.1f}",
            kl="skipped" if row["skipped"] else f"{row['measured_kl']:.4f}",
        )
