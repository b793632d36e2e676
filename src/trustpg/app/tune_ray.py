"""``trustpg tune --workers N``: the tune processes as Ray tasks, on a local Ray instance or, with
``--ray-address``, on a running cluster (``pip install 'trustpg[ray]'``).

Each task is what ``--jobs`` starts as a process (:func:`trustpg.app.tune.tune_worker`): trials
until its share is done, against the one study. On a cluster every node must reach the study, so
``--ray-address`` takes a database URL as ``--storage`` (e.g. ``postgresql://...``), not the
default SQLite file. Ray runs its workers outside the terminal's process group; Ctrl-C reaches this
process, which cancels each task once: Ray calls the task's SIGINT handler, so its trial stops after
the current update with a checkpoint, exactly as with ``--jobs``. SIGTERM does the same (``ray.init``
would otherwise have it kill this process on the spot, the tasks with it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from trustpg.app.workers import INTERRUPTED, overall_status
from trustpg.errors import MissingExtra, UserError

if TYPE_CHECKING:
    from trustpg.app.tune_trial import Tune


def check_ray(storage: str, address: str | None) -> None:
    """Before anything is created: Ray is installed, the cluster answers, its nodes can share the study."""
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")  # one line per trial, not "repeated 2x across cluster"
    try:
        import ray  # noqa: F401
    except ImportError:
        raise MissingExtra("trustpg tune --workers needs Ray: pip install 'trustpg[ray]'") from None
    if address is not None:
        if storage.startswith("sqlite:"):
            raise UserError("--ray-address: the trials run on other machines, which cannot share a "
                            "SQLite file; give --storage a database URL they all reach "
                            "(e.g. postgresql://user@host/db)")  # fmt: skip
        from trustpg.sampling.ray_connect import check_ray_address

        check_ray_address(address)


def _task(t: Tune, worker: int, share: int) -> int:
    from trustpg.app.guard import guarded
    from trustpg.app.tune import tune_worker

    return guarded(lambda: tune_worker(t, worker, share))


@contextlib.contextmanager
def _sigterm_as_ctrl_c() -> Iterator[None]:
    """In the block, SIGTERM raises KeyboardInterrupt, as Ctrl-C does (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def run_on_ray(t: Tune, shares: list[int], address: str | None) -> int:
    """Runs one task per share; 130 after Ctrl-C, else the first failing task's status, else 0."""
    import ray

    from trustpg.sampling.ray_connect import connect_ray, keeping_signal_handlers

    with keeping_signal_handlers():
        if address is None:
            ray.init(num_cpus=len(shares), include_dashboard=False)
        else:
            connect_ray(ray, address)
    try:
        task: Any = ray.remote(num_cpus=1)(_task)
        refs = [task.remote(t, w, n) for w, n in enumerate(shares)]
        try:
            with _sigterm_as_ctrl_c():
                return overall_status(ray.get(refs), stopped=False)
        except KeyboardInterrupt:
            for ref in refs:  # Ray calls each task's SIGINT handler: the trial checkpoints and stops
                ray.cancel(ref)
            for ref in refs:  # a task cancelled before it started, or one that failed: RayError
                with contextlib.suppress(ray.exceptions.RayError):
                    ray.get(ref)
            return INTERRUPTED
    finally:
        ray.shutdown()
