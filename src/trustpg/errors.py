"""Exceptions a user meets, reported by the command line in one line.

``UserError`` is bad input (exit status 2, nothing created); ``RunInUse`` is a run directory
another trustpg process holds. Faults found while training (``EnvFault``, ``TrainingFault``)
exit with status 1. Every layer may import this module (it imports nothing of trustpg), so a
lower layer never imports a higher one just for an exception type.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class UserError(Exception):
    """Bad input from the user: reported in one line, exit status 2."""


class RunInUse(UserError):
    """The run directory is locked by another running trustpg process."""


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, edited, or not a trustpg checkpoint."""


class EnvFault(RuntimeError):
    """An environment returned non-finite values, raised, took longer than ``step_timeout`` or
    lost its worker process during a step or reset."""


class TrainingFault(RuntimeError):
    """Training cannot continue (e.g. too many consecutive numerical failures).

    ``row`` is the record (an :class:`~trustpg.io.record.UpdateRecord`) of the update that
    triggered the stop, so it can still be logged.
    """

    def __init__(self, message: str, row: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.row = row


class MissingExtra(ImportError):
    """An optional dependency (a ``trustpg[...]`` extra) is not installed."""


class CriticWorkerError(RuntimeError):
    """The critic worker process could not be started, died, or reported an error."""


class RayConnectError(ValueError):
    """No Ray cluster answered at ``ray_address``: bad input, one line and exit status 2 on the
    command line (a ValueError, as the CLI reports those)."""


class InterruptedWhileStarting(KeyboardInterrupt):
    """Ctrl-C before the command was ready: nothing was written (:mod:`trustpg.app.interrupts`)."""
