"""Ctrl-C while ``trustpg`` starts: held until the command is ready, then raised there.

Python turns SIGINT into KeyboardInterrupt at whatever bytecode runs when it arrives. While torch
and gymnasium import and the envs are built, that bytecode can be a finalizer or a weakref
callback (Python prints "Exception ignored" and the Ctrl-C is lost: the run trains on), the middle
of a module's import (NumPy left half-initialised: the run crashes later with ``module 'numpy' has
no attribute 'matrix'``), or a point after which the process exits by SIGINT (status -2) whatever
status the command returned (CPython records some KeyboardInterrupts as unhandled even when they
were caught; which point does it was not pinned down). All three were seen with ``python -m
trustpg train`` and a Ctrl-C 0.8-3.0 s after the start.

So from the first line of the entry point (:mod:`trustpg.app.console`) until the command has
imported what it needs and checked its input (:func:`release`), a first SIGINT is only noted;
:func:`release` raises it as KeyboardInterrupt at that one known point, where nothing has been
written yet (``trustpg train`` releases after building its agent, before it locks the run
directory). A second SIGINT while held raises at once: the user insists. A SIGINT that was ignored
at start (``nohup``, ``cmd &``) stays ignored; outside the main thread nothing is changed.

The command's children need the same shelter. A terminal's Ctrl-C signals the whole foreground
group, and third-party code starts processes while trustpg starts: importing MuJoCo imports the
``glfw`` package, which runs a second Python interpreter to read the GLFW library's version. Hit
while it imported ``site``, that interpreter printed ``Fatal Python error: init_import_site`` and
a traceback into the user's terminal (CI saw it with a Ctrl-C 2.2 s after the start). So while
held, the main thread also *blocks* SIGINT: every process started from it (or from a thread it
starts) inherits the block, and a Ctrl-C sent to it stays pending, harmless, as for trustpg's own
children (:mod:`trustpg.accel.children`). The SIGINT sent to this process is taken by a thread
started just before the block, the only one without it; Python then runs the handler in the main
thread as usual. :func:`release` lifts the block in the main thread.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from trustpg.errors import InterruptedWhileStarting

_state: dict[str, Any] = {"held": False, "pending": False, "receiver": None}


def _note(_signum: int, _frame: Any) -> None:
    if _state["pending"]:  # a second Ctrl-C: do not make the user wait for the imports
        raise KeyboardInterrupt
    _state["pending"] = True


def hold() -> None:
    """Note SIGINT instead of raising it, if SIGINT has Python's default handler."""
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return
    try:
        signal.signal(signal.SIGINT, _note)
    except ValueError:  # not the main thread
        return
    _state.update(held=True, pending=False, receiver=None)
    if hasattr(signal, "pthread_sigmask"):  # not on Windows (no signal masks, no process groups)
        done = threading.Event()
        # Started before the block, so it alone does not block SIGINT: the kernel gives it the
        # process's SIGINT, and Python runs _note in the main thread at its next instruction.
        threading.Thread(target=done.wait, name="trustpg-sigint", daemon=True).start()
        before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        if signal.SIGINT in before:  # blocked already by whoever started us: leave it so
            done.set()
        else:
            _state["receiver"] = done


def release() -> None:
    """Give SIGINT back its default handler; raise :class:`InterruptedWhileStarting` (a
    KeyboardInterrupt) here if one arrived while held. A no-op when nothing is held (a worker
    process, a library caller, a second call)."""
    if not _state["held"]:
        return
    _state["held"] = False
    receiver = _state["receiver"]
    if receiver is not None:
        # Unblocked while _note is still the handler: a SIGINT pending on this thread is noted
        # (pthread_sigmask runs the handlers before it returns).
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        receiver.set()
        _state["receiver"] = None
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if _state["pending"]:
        _state["pending"] = False
        raise InterruptedWhileStarting
