"""A run directory: checked before anything is created, locked while a process uses it, and
written only atomically (a crash leaves the old file or the new one, never a torn one).

Layout: ``config.json`` (the resolved config), ``metrics.csv``, ``tb/``, ``checkpoints/``
(``last``, ``best``), ``summary.json`` (written when a run finishes) and ``.lock``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from trustpg.errors import RunInUse, UserError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, runs are not protected against a second writer
    fcntl = None  # type: ignore[assignment]

#: Longest run directory name: most file systems allow 255 bytes per name; leave room for the
#: temporary names (".name.tmp-PID") written next to it.
MAX_NAME_BYTES = 200
LOCK_NAME = ".lock"


def checkpoint_file(run: Path, which: str = "last") -> Path:
    return run / "checkpoints" / f"{which}.safetensors"


def is_run(path: Path) -> bool:
    """True if ``path`` looks like a trustpg run directory (made by ``trustpg train``)."""
    return (path / "config.json").is_file() or (path / "checkpoints").is_dir()


def env_part(env: str) -> str:
    """An env id as part of a default run name: a namespaced id (``MinAtar/Breakout-v1``,
    ``ALE/Pong-v5``) or a ``module:Env`` id gives one folder, not nested ones."""
    return env.replace("/", "_").replace("\\", "_").replace(":", "_")


def check_name(name: str) -> None:
    if len(name.encode()) > MAX_NAME_BYTES:
        raise UserError(
            f"run name is {len(name.encode())} bytes long; file systems allow at most "
            f"{MAX_NAME_BYTES} here: choose a shorter --run-name"
        )


def _nearest_existing(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_creatable(run: Path) -> None:
    """UserError unless ``run`` can be made (or is a directory) and written; creates nothing."""
    check_name(run.name)
    if run.exists() and not run.is_dir():
        raise UserError(f"{run} exists and is not a directory; choose another --run-dir/--run-name")
    base = _nearest_existing(run)
    if not base.is_dir():
        raise UserError(f"cannot create {run}: {base} is a file, not a directory; choose another --run-dir")
    if not os.access(base, os.W_OK | os.X_OK):
        raise UserError(f"cannot create {run}: {base} is not writable (read-only or no permission)")


def check_new_run(run: Path) -> bool:
    """Before a fresh (not ``--resume``) run in ``run``: UserError if it already holds a run with
    a checkpoint or holds files that are not a run. Returns True if ``run`` holds a run that never
    wrote a checkpoint (it is started again from the beginning, not a dead end)."""
    if not check_not_foreign(run):
        return False
    if checkpoint_file(run).is_file():
        raise UserError(
            f"{run} already holds a run; continue it with --resume {run}, or use another --run-name"
        )
    return True


def check_not_foreign(run: Path) -> bool:
    """UserError if ``run`` cannot be made or is a non-empty directory that is not a run (nothing
    is written into it, not even the lock file). Returns True if ``run`` holds anything."""
    check_creatable(run)
    if not run.exists() or all(p.name == LOCK_NAME for p in run.iterdir()):
        return False
    if is_run(run):
        return True
    raise UserError(
        f"{run} is a directory that is not a trustpg run (no config.json or checkpoints/); "
        "choose another --run-name or --run-dir (nothing was overwritten)"
    )


#: Run directories this process holds the lock of (``locked`` is re-entrant within a process:
#: the command line takes the lock before it loads a checkpoint, then ``Agent.learn`` takes it again).
_HELD: dict[Path, int] = {}


@contextlib.contextmanager
def locked(run: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``run`` (made if missing) for the block; RunInUse if another
    process holds it. The lock is the OS's: it ends with the process, even on kill -9. It is a POSIX
    record lock (``lockf``), not ``flock``: processes forked while it is held (async env workers)
    do not inherit it, so it ends when this process lets go, not when the last worker exits."""
    run.mkdir(parents=True, exist_ok=True)
    key = run.resolve()
    if fcntl is None or key in _HELD:
        _HELD[key] = _HELD.get(key, 0) + 1
        try:
            yield
        finally:
            _HELD[key] -= 1
            if not _HELD[key]:
                del _HELD[key]
        return
    path = run / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise RunInUse(
                f"{run} is in use by another trustpg process (pid {holder}); wait for it to finish "
                "or choose another --run-name"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _HELD[key] = 1
        try:
            yield
        finally:
            del _HELD[key]
    finally:
        os.close(fd)  # releases the lock


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file, fsync and rename (then fsync the dir)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def write_json(path: Path, data: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(data, indent=2) + "\n")


def read_json(path: Path, what: str = "") -> dict[str, Any]:
    """A JSON object from ``path``; UserError naming the file if it is missing or corrupt."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no such file{what}") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise UserError(f"{path} is unreadable or corrupt ({type(e).__name__}: {e}){what}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object, found {type(data).__name__}{what}")
    return data
