"""Training progress people can read, in a terminal and in a log file.

In a terminal: two lines that fit 80 columns, the bar with the step count and the two times
labelled, then the numbers of the last update::

    train ━━━━━━━━━━━━━━━━━━━╸━━━━━━━━━━━━  61,440/100,000 steps  elapsed 0:00:21  left 0:00:13
          return 187.3 · KL 0.0097 · 2,912 steps/s

Anywhere else (``nohup``, CI, ``> train.log``): one plain line every ``every`` seconds and at the
end, instead of silence until the run ends::

    train 61,440/100,000 steps (61%) | return 187.3 | KL 0.0097 | 2,912 steps/s | elapsed 0:00:21 |
    left 0:00:13   (one line; wrapped here)

The numbers shown are the fields of :class:`~trustpg.io.record.UpdateRecord` that declare a
progress label (:data:`~trustpg.io.record.PROGRESS_FIELDS`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from trustpg.io.record import PROGRESS_FIELDS, format_value

#: Seconds between plain progress lines when the output is not a terminal.
PLAIN_EVERY = 10.0


def clock(seconds: float) -> str:
    """``h:mm:ss``; "-:--:--" when unknown."""
    if not math.isfinite(seconds) or seconds < 0:
        return "-:--:--"
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class TrainProgress:
    """Context manager; ``update(record)`` advances to ``record["env_steps"]``."""

    def __init__(
        self, total: int, start: int, enabled: bool = True, *, console: Console | None = None,
        every: float = PLAIN_EVERY,
    ) -> None:  # fmt: skip
        self.enabled, self.total, self.start, self.done = enabled, total, start, start
        self.console = console if console is not None else Console()
        self.every = every
        self.values: dict[str, Any] = {}  # the last finite value of each progress field
        self._t0 = self._last_line = time.monotonic()
        self._live: Live | None = None
        self._printed_at = start

    # -- what is shown ----------------------------------------------------------------------------
    def elapsed(self) -> float:
        return time.monotonic() - self._t0

    def remaining(self) -> float:
        """Seconds left at this call's average speed (nan before the first update)."""
        done = self.done - self.start
        return (self.total - self.done) * self.elapsed() / done if done > 0 else math.nan

    def steps(self) -> str:
        return f"{self.done:,}/{self.total:,} steps"

    def fields(self) -> list[str]:
        out = []
        for name, label, fmt in PROGRESS_FIELDS:
            if name in self.values:  # e.g. eval only once an evaluation ran
                value = format_value(self.values[name], fmt)
                out.append(f"{value} {label}" if label == "steps/s" else f"{label} {value}")
        return out

    def plain_line(self) -> str:
        pct = f" ({self.done / self.total:.0%})" if self.total > 0 else ""
        parts = [f"train {self.steps()}{pct}", *self.fields()]
        parts += [f"elapsed {clock(self.elapsed())}", f"left {clock(self.remaining())}"]
        return " | ".join(parts)

    def _render(self) -> Group:
        bar = Table.grid(padding=(0, 1), expand=True)
        bar.add_column(no_wrap=True)
        bar.add_column(ratio=1)
        bar.add_column(no_wrap=True, justify="right")
        bar.add_row(
            Text("train", style="bold"),
            ProgressBar(total=max(self.total, 1), completed=self.done),
            Text(f"{self.steps()}  elapsed {clock(self.elapsed())}  left {clock(self.remaining())}"),
        )
        return Group(bar, Text("      " + " · ".join(self.fields()) if self.fields() else ""))

    # -- driving it ---------------------------------------------------------------------------------
    def __enter__(self) -> TrainProgress:
        self._t0 = self._last_line = time.monotonic()
        if self.enabled and (self.console.is_terminal or self.console.is_jupyter):
            self._live = Live(get_renderable=self._render, console=self.console, refresh_per_second=4)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None
        elif self.enabled and self._printed_at != self.done:
            self._print_plain()  # the final state, unless the last line already showed it

    def update(self, record: Mapping[str, Any]) -> None:
        self.done = int(record["env_steps"])
        for name, _, _ in PROGRESS_FIELDS:
            value = record.get(name, math.nan)
            if not (isinstance(value, float) and math.isnan(value)):
                self.values[name] = value
        if record.get("skipped"):
            self.values["measured_kl"] = "skipped"  # this update took no step
        if self._live is not None:
            self._live.refresh()
        elif self.enabled and time.monotonic() - self._last_line >= self.every:
            self._print_plain()

    def _print_plain(self) -> None:
        self._last_line, self._printed_at = time.monotonic(), self.done
        self.console.print(self.plain_line(), markup=False, highlight=False, soft_wrap=True)
