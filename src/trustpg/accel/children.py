"""Child processes leave a terminal's Ctrl-C to the process that started them.

A terminal's Ctrl-C signals its whole foreground process group. trustpg's children (the critic
worker, async env workers, ``train --seeds`` runs) must not die of it half-started: the parent
owns shutdown (it finishes its update, checkpoints, then closes them). Ignoring SIGINT in the
child's own code is too late: a fresh interpreter can be hit while it still imports ``site``
(``Fatal Python error: init_import_site``), a forked one while it builds its env, before either
runs a line of ours.

So the parent starts children with SIGINT *blocked* (:func:`sigint_blocked`; a child inherits the
signal mask of the thread that starts it, across ``fork`` and ``exec``): a SIGINT sent to a child
while it starts stays pending, harmless. The child's first act is :func:`leave_sigint_to_parent`
(ignore SIGINT, which discards a pending one, then unblock it). In the parent, a SIGINT that
arrives while it is blocked is delivered when the block ends: none is lost.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def sigint_blocked() -> Iterator[None]:
    """Block SIGINT in this thread for the ``with`` body (children started in it inherit that)."""
    if not hasattr(signal, "pthread_sigmask"):  # Windows: no signal masks (and no process groups)
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def leave_sigint_to_parent() -> None:
    """In a child started under :func:`sigint_blocked`: ignore SIGINT from now on, then unblock
    it (a SIGINT pending since the start is discarded). Only the main thread can set handlers;
    elsewhere it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
