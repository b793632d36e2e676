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
"""

from __future__ import annotations

import signal
from typing import Any

from trustpg.errors import InterruptedWhileStarting

_state = {"held": False, "pending": False}


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
    _state.update(held=True, pending=False)


def release() -> None:
    """Give SIGINT back its default handler; raise :class:`InterruptedWhileStarting` (a
    KeyboardInterrupt) here if one arrived while held. A no-op when nothing is held (a worker
    process, a library caller, a second call)."""
    if not _state["held"]:
        return
    _state["held"] = False
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if _state["pending"]:
        _state["pending"] = False
        raise InterruptedWhileStarting
