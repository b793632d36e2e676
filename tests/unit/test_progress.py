"""The progress display: readable in a terminal at 80 columns, and plain lines in a log file."""

from __future__ import annotations

import io
import math
import re

import pytest
from rich.console import Console

from trustpg.io.progress import TrainProgress, clock

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _record(steps: int, **over: float) -> dict[str, float]:
    row = {"env_steps": steps, "mean_return": -1234.5, "measured_kl": 0.00987,
           "steps_per_sec": 12345.0, "eval_return": math.nan, "skipped": 0}  # fmt: skip
    row.update(over)
    return row


def _run(terminal: bool, every: float, total: int = 1_000_000, width: int = 80) -> list[str]:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=terminal, width=width, color_system=None)
    with TrainProgress(total, 0, console=console, every=every) as p:
        for i in range(1, 4):
            p.update(_record(i * 100_000))
    lines = ANSI.sub("", buf.getvalue()).replace("\r", "\n").splitlines()
    return [line for line in lines if line.strip()]


def test_terminal_display_fits_80_columns_with_the_whole_step_total_and_labelled_times():
    lines = _run(terminal=True, every=1e9)
    assert lines and all(len(line) <= 80 for line in lines), lines
    last_bar = [line for line in lines if line.startswith("train")][-1]
    assert "300,000/1,000,000 steps" in last_bar
    assert "elapsed " in last_bar and "left " in last_bar
    assert any(
        "return -1234.5" in line and "KL 0.0099" in line and "12,345 steps/s" in line for line in lines
    )


@pytest.mark.parametrize("total", [10_000_000_000])
def test_terminal_display_keeps_a_huge_step_total_whole_at_80_columns(total):
    lines = _run(terminal=True, every=1e9, total=total)
    assert all(len(line) <= 80 for line in lines), lines
    assert any(f"300,000/{total:,} steps" in line for line in lines)


def test_not_a_terminal_gives_plain_lines_every_interval_and_at_the_end():
    lines = _run(terminal=False, every=0.0)
    assert len(lines) == 3  # one per update (interval 0); the end adds none when nothing changed
    assert lines[-1].startswith("train 300,000/1,000,000 steps (30%) | return -1234.5 | KL 0.0099")
    assert "elapsed 0:00:0" in lines[-1] and "| left " in lines[-1]


def test_not_a_terminal_with_a_long_interval_prints_only_the_final_state():
    lines = _run(terminal=False, every=1e9)
    assert len(lines) == 1 and lines[0].startswith("train 300,000/1,000,000 steps (30%)")


def test_a_skipped_update_and_a_periodic_evaluation_are_shown():
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=False, width=200)
    with TrainProgress(100, 0, console=console, every=0.0) as p:
        p.update(_record(50, skipped=1, eval_return=321.0))
    assert "KL skipped" in buf.getvalue() and "eval 321.0" in buf.getvalue()


def test_disabled_progress_prints_nothing():
    buf = io.StringIO()
    with TrainProgress(100, 0, enabled=False, console=Console(file=buf), every=0.0) as p:
        p.update(_record(50))
    assert buf.getvalue() == ""


def test_clock():
    assert clock(0) == "0:00:00" and clock(3725.4) == "1:02:05" and clock(math.nan) == "-:--:--"
