"""Exceptions a user meets, reported by the command line in one line.

``UserError`` is bad input (exit status 2, nothing created); ``RunInUse`` is a run directory
another trustpg process holds. Faults found while training (``EnvFault``, ``TrainingFault``)
live next to the code that detects them and exit with status 1.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: reported in one line, exit status 2."""


class RunInUse(UserError):
    """The run directory is locked by another running trustpg process."""
