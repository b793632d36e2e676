"""Helpers for tests that watch a training process from outside: rows logged so far, and polling."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path


def rows(run: Path) -> int:
    """Rows of ``run/metrics.csv`` written so far (0 before the file exists)."""
    path = run / "metrics.csv"
    return len(path.read_text().splitlines()) - 1 if path.exists() else 0


def wait_for(predicate: Callable[[], bool], what: str, limit: float = 300.0) -> None:
    """Poll until ``predicate()``; the limit only stops a hung test, it asserts nothing about speed."""
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up waiting for {what}")
        time.sleep(0.01)


def as_from_a_terminal() -> None:
    """``preexec_fn`` for a command under test: SIGINT at its default, as a shell started from a
    terminal gives it. (A test run launched in the background of a script inherits SIGINT
    ignored, and a child would inherit that too; Python then never raises KeyboardInterrupt.)"""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def untimed(rows: list[dict]) -> list[dict]:
    """Metrics rows without their timing columns (seconds, *_seconds, wall_time, steps_per_sec),
    NaN as "nan" so that rows compare equal: what a bit-exact resume must reproduce."""
    timing = ("seconds", "wall_time", "steps_per_sec")
    return [{k: ("nan" if v != v else v) for k, v in r.items() if not k.endswith(timing)} for r in rows]
