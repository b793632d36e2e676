"""Callbacks for :meth:`trustpg.Agent.learn`.

A callback is any callable ``callback(row) -> bool | None``. ``row`` is the update's
:class:`~trustpg.io.record.UpdateRecord`, which reads like a dict of the columns of metrics.csv
(``row["mean_return"]``, docs/usage.md); returning ``False`` stops training after
that update (the final checkpoint is still written). ``learn`` also accepts a list of callbacks,
which run in order and stop training if any of them returns False.

    agent.learn(200_000, callback=[StopOnReturn(475, window=3), EveryN(10, print_row)])
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

#: An update's record (:class:`trustpg.io.record.UpdateRecord`) or any mapping of its columns.
Row = Mapping[str, Any]
Callback = Callable[[Row], "bool | None"]


class StopOnReturn:
    """Stop once the mean of the last ``window`` logged ``mean_return`` values reaches ``threshold``.

    Updates in which no episode ended (``mean_return`` is nan) are not counted.
    """

    def __init__(self, threshold: float, window: int = 1, column: str = "mean_return") -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.threshold = threshold
        self.column = column
        self.recent: deque[float] = deque(maxlen=window)
        self.stopped_at: int | None = None  # env steps when it fired

    def __call__(self, row: Row) -> bool:
        value = float(row[self.column])
        if not math.isnan(value):
            self.recent.append(value)
        full = len(self.recent) == self.recent.maxlen
        if full and sum(self.recent) / len(self.recent) >= self.threshold:
            self.stopped_at = int(row["env_steps"])
            return False
        return True


class EveryN:
    """Call ``fn(row)`` every ``n`` updates (on updates n, 2n, ...); ``fn`` returning False stops."""

    def __init__(self, n: int, fn: Callback) -> None:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        self.n = n
        self.fn = fn

    def __call__(self, row: Row) -> bool | None:
        if int(row["update"]) % self.n == 0:
            return self.fn(row)
        return None


class History:
    """Keeps every row it sees (``history.rows``), e.g. to plot in a notebook."""

    def __init__(self) -> None:
        self.rows: list[Row] = []

    def __call__(self, row: Row) -> None:
        self.rows.append(dict(row))

    def column(self, name: str) -> list[Any]:
        return [r[name] for r in self.rows]


class CallbackList:
    """Runs callbacks in order; stops training if any returns False (all of them still run)."""

    def __init__(self, callbacks: Sequence[Callback]) -> None:
        self.callbacks = list(callbacks)

    def __call__(self, row: Row) -> bool:
        results = [cb(row) for cb in self.callbacks]
        return all(r is not False for r in results)


def print_row(row: Row) -> None:
    """A one-line console summary of an update (for ``EveryN(k, print_row)``)."""
    print(
        f"update {row['update']:>4}  steps {row['env_steps']:>8}  return {row['mean_return']:8.2f}  "
        f"KL {row['measured_kl']:.4f}  backtracks {row['backtracks']}"
    )
