"""Helpers for tests that watch a training process from outside: rows logged so far, and polling."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


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


def continues_identically(a: Any, b: Any, warmup: int, steps: int) -> int:
    """Step vector env ``a`` ``warmup`` times, capture it as JSON, restore it into ``b`` (reset
    with another seed), then assert the next ``steps`` steps of both are identical. Returns the
    episode ends seen while comparing (so a caller can check resets were crossed)."""
    import json

    import numpy as np

    from trustpg.envs.envstate import capture_vector_env, restore_vector_env

    a.reset(seed=1)
    b.reset(seed=99)
    a.action_space.seed(0)
    for _ in range(warmup):
        a.step(a.action_space.sample())
    saved = json.loads(json.dumps(capture_vector_env(a)))
    assert restore_vector_env(b, saved) is None
    ends = 0
    for _ in range(steps):
        action = a.action_space.sample()
        out_a, out_b = a.step(action), b.step(action)
        for x, y in zip(out_a[:4], out_b[:4]):
            assert np.array_equal(x, y)
        ends += int(np.sum(out_a[2] | out_a[3]))
    return ends
