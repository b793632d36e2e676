"""Connecting to the Ray cluster of ``ray_address`` in bounded time, with a one-line error (issue 18).

Left to itself, ``ray.init`` reports a missing cluster in ways that do not fit a command line:
``auto`` raises quickly, but a ``ray://`` address retries for ~30 s and then raises with a
multi-line warning, and a ``host:port`` (GCS) address retries forever while Ray's C++ core logs to
stderr. :func:`check_ray_address` probes the address first (a TCP connection, no Ray state), and
:func:`connect_ray` runs ``ray.init`` under a deadline; both raise :class:`RayConnectError`.

``ray.init`` also replaces the process's SIGTERM handler: Python's with one that exits at once, the
C one with a stack dump. :func:`keeping_signal_handlers` gives the caller's handlers back, so that
SIGTERM still finishes the update and checkpoints a run with rollout workers.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
import warnings
from collections.abc import Iterator
from typing import Any

from trustpg.errors import RayConnectError

#: Seconds a Ray cluster given by ``ray_address`` has to answer before the run gives up.
RAY_CONNECT_TIMEOUT = 30.0
RAY_START_HINT = "start one with 'ray start --head', or leave ray_address unset for a local instance"


@contextlib.contextmanager
def keeping_signal_handlers() -> Iterator[None]:
    """SIGINT's and SIGTERM's handlers after the block are those before it (main thread only:
    elsewhere signals cannot be handled). Wrap ``ray.init`` in it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            if handler is not None:  # None: set outside Python, cannot be put back
                signal.signal(sig, handler)


def _unreachable(address: str, why: str) -> RayConnectError:
    return RayConnectError(f"ray_address={address!r}: {why}; {RAY_START_HINT}")


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of ``ray://host[:port]`` (port 10001 by default) or ``host:port``."""
    rest = address.removeprefix("ray://")
    host, sep, port = rest.rpartition(":")
    if not sep:
        return (rest, 10001) if address.startswith("ray://") and rest else None
    return (host.strip("[]"), int(port)) if port.isdigit() and host else None


def _resolve_auto(address: str) -> str | None:
    """The ``host:port`` Ray itself would connect to for ``auto`` (RAY_ADDRESS, the address file of
    ``ray start``, a running local GCS), or None if that cannot be told (Ray's private API)."""
    try:
        from ray._private.services import canonicalize_bootstrap_address
    except ImportError:
        return None
    try:
        return canonicalize_bootstrap_address("auto")
    except ConnectionError:
        raise _unreachable(address, "no running Ray cluster was found on this machine") from None
    except Exception:  # anything else: let ray.init decide, under its deadline
        return None


def check_ray_address(address: str, timeout: float = RAY_CONNECT_TIMEOUT) -> None:
    """:class:`RayConnectError` unless something listens at ``address`` (a TCP connection; for
    ``auto``, a running cluster must be found). Creates no Ray state: ``trustpg train`` calls it
    before it makes the run directory; :func:`connect_ray` then connects."""
    target = _resolve_auto(address) if address == "auto" else address
    host_port = _host_port(target) if target else None
    if host_port is None:
        return
    try:
        socket.create_connection(host_port, timeout=timeout).close()
    except OSError as e:
        why = "timed out" if isinstance(e, TimeoutError) else (e.strerror or type(e).__name__).lower()
        where = f"{host_port[0]}:{host_port[1]}"
        raise _unreachable(address, f"no Ray cluster answered at {where} ({why})") from None


def connect_ray(ray: Any, address: str, timeout: float = RAY_CONNECT_TIMEOUT) -> None:
    """``ray.init(address=address)``, or :class:`RayConnectError` in one line within ``timeout``
    seconds: Ray itself retries a ``ray://`` address for ~30 s and a ``host:port`` one forever."""
    check_ray_address(address, timeout)
    outcome: list[BaseException | None] = []

    def init() -> None:
        try:
            with warnings.catch_warnings():  # Ray's own multi-line advice; ours is one line
                warnings.simplefilter("ignore")
                ray.init(address=address)
            outcome.append(None)
        except BaseException as e:  # reported in the caller's thread
            outcome.append(e)

    thread = threading.Thread(target=init, name="trustpg-ray-connect", daemon=True)
    thread.start()
    thread.join(timeout)
    if not outcome:
        raise _unreachable(address, f"no Ray cluster answered within {timeout:g} s")
    if outcome[0] is not None:
        e = outcome[0]
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise _unreachable(address, f"could not connect: {type(e).__name__}: {first}") from None
