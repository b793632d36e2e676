"""Run commands' jobs in worker processes (``train --seeds``, ``tune --jobs``), and stop them cleanly.

Each worker is a fresh interpreter (multiprocessing ``spawn``: no copy of the parent's torch or
threads) in a process group of its own, so a terminal's Ctrl-C reaches only the parent, which
passes exactly one SIGINT to each worker: the worker's training loop finishes its update, writes
its checkpoint and returns (a second Ctrl-C is passed on too, and stops the workers at once, as
it does ``trustpg train``). SIGTERM to the parent is passed on the same way. The parent starts
no new job once stopped.

SIGINT is blocked while a worker is started, so the worker inherits the block and cannot be hit
before it has left the terminal's process group; it unblocks the signal once it has.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import Any

from trustpg.accel.children import sigint_blocked

Job = tuple[Callable[..., int], tuple[Any, ...]]
INTERRUPTED = 130


def _worker(ready: Any, fn: Callable[..., int], args: tuple[Any, ...]) -> None:
    from trustpg.app.guard import guarded

    os.setpgid(0, 0)  # out of the terminal's foreground group: only the parent signals us
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    ready.set()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # whole lines, not mixed
    sys.exit(guarded(lambda: fn(*args)))


@dataclass
class Pool:
    """Runs ``jobs`` with at most ``parallel`` at a time; :meth:`run` returns their exit statuses
    (``None`` for a job never started because the pool was stopped)."""

    jobs: Sequence[Job]
    parallel: int
    tick: Callable[[], None] | None = None  # called every ``tick_seconds`` while jobs run
    tick_seconds: float = 60.0
    stopped: int = 0  # signals received (the first stops starting jobs)
    _running: dict[int, tuple[Any, Any]] = field(default_factory=dict)  # job index -> (process, ready)
    _unsent: dict[int, int] = field(default_factory=dict)  # job index -> signals not yet passed on

    def run(self) -> list[int | None]:
        ctx = mp.get_context("spawn")
        status: list[int | None] = [None] * len(self.jobs)
        pending = list(range(len(self.jobs)))
        # SIGINT ignored at start (a background job, nohup) stays ignored, as in a single run
        # (train.lifecycle.StopFlag); the spawned runs inherit that and ignore it too.
        ours = [s for s in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(s) is not signal.SIG_IGN]
        old = {s: signal.signal(s, self._on_signal) for s in ours}
        last_tick = time.monotonic()
        try:
            while self._running or (pending and not self.stopped):
                while pending and not self.stopped and len(self._running) < self.parallel:
                    self._start(ctx, pending.pop(0))
                self._pass_on_signals()
                ended = wait([p.sentinel for p, _ in self._running.values()], timeout=0.2)
                for i, (p, _) in list(self._running.items()):
                    if p.sentinel in ended:
                        p.join()
                        status[i] = p.exitcode if p.exitcode >= 0 else 128 - p.exitcode
                        del self._running[i]
                if self.tick is not None and time.monotonic() - last_tick >= self.tick_seconds:
                    last_tick = time.monotonic()
                    self.tick()
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        return status

    def _start(self, ctx: Any, i: int) -> None:
        fn, args = self.jobs[i]
        ready = ctx.Event()
        p = ctx.Process(target=_worker, args=(ready, fn, args), daemon=False)
        with sigint_blocked():
            p.start()
        self._unsent[i] = 0
        self._running[i] = (p, ready)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.stopped += 1
        for i in list(self._running):
            self._unsent[i] = self._unsent.get(i, 0) + 1

    def _pass_on_signals(self) -> None:
        """Each signal the parent got goes once to each running worker, as soon as it listens."""
        for i, (p, ready) in self._running.items():
            while self._unsent[i] > 0 and ready.is_set():
                self._unsent[i] -= 1
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGINT)


def overall_status(statuses: Sequence[int | None], stopped: bool) -> int:
    """130 if the pool was stopped, else the first failing job's status, else 0."""
    if stopped:
        return INTERRUPTED
    return next((s for s in statuses if s), 0)
