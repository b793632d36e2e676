"""How a command's failures reach the user: one line on stderr and an exit status.

Bad input (:class:`~trustpg.errors.UserError` and friends) exits 2, a fault found while training
exits 1, Ctrl-C outside the training loop exits 130. ``trustpg`` itself and every worker process a
command starts (``train --seeds``, ``tune --jobs``) report through :func:`guarded`, so a failure
reads the same wherever it happened.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import NoReturn

from trustpg.errors import (
    CheckpointError,
    EnvFault,
    InterruptedWhileStarting,
    MissingExtra,
    TrainingFault,
    UserError,
)


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad option as a UserError (one line, exit 2), not usage + error."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message} (see {self.prog} --help)")


def fail(msg: str) -> int:
    print(f"trustpg: error: {msg}", file=sys.stderr)
    return 2


def guarded(call: Callable[[], int]) -> int:
    """``call()``'s exit status, or the status of the error it raised after a one-line report."""
    try:
        return call()
    except (UserError, ValueError, TypeError, CheckpointError, MissingExtra) as e:
        return fail(str(e))
    except (EnvFault, TrainingFault) as e:
        print(f"trustpg: stopped: {e}", file=sys.stderr)
        return 1
    except InterruptedWhileStarting:
        print("trustpg: interrupted while starting; nothing was written", file=sys.stderr)
        return 130
    except KeyboardInterrupt:  # before training started, or a second Ctrl-C during it
        print("trustpg: interrupted; every checkpoint written so far is intact", file=sys.stderr)
        return 130
    except OSError as e:  # disk full, read-only file system, ...: the file and the reason
        where = f"{e.filename}: " if e.filename else ""
        print(f"trustpg: error: cannot write or read {where}{e.strerror or e}; every checkpoint "
              "written before this is intact", file=sys.stderr)  # fmt: skip
        return 1
    except Exception as e:
        if _missing_env_dependency(e):  # e.g. a Box2D env without box2d
            return fail(f"the environment needs a package that is not installed: {e}")
        raise


def _missing_env_dependency(e: Exception) -> bool:
    """Gymnasium's DependencyNotInstalled, without importing gymnasium for it (fast ``--help``)."""
    gym = sys.modules.get("gymnasium")
    return gym is not None and isinstance(e, gym.error.DependencyNotInstalled)
