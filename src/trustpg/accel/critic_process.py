"""Parent side of the critic worker process (:mod:`trustpg.accel.critic_worker`).

:class:`CriticProcess` starts ``python -m trustpg.accel.critic_worker`` on first use, sends it one fit at a
time and reads the answer when the trainer needs the critic. Jobs carry everything (parameters,
Adam state, data, minibatch permutations), so the child holds no state between fits and a child
that dies is simply restarted; the caller fits in-process when a fit fails (nothing is lost).

Nothing waits forever on the child: sending a job and reading its answer have a deadline of
``max(min_timeout, timeout_factor × the last fit's time)`` (60 s and 50× by default); a child
that misses it (stopped, hung) is killed and reported as a :class:`CriticWorkerError`.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import struct
import subprocess
import sys
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from trustpg.accel.children import sigint_blocked
from trustpg.core.optim import Adam
from trustpg.errors import CriticWorkerError
from trustpg.nets.policies import MLPSpec

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]


class CriticProcess:
    """One child process fitting critics; :meth:`submit` then :meth:`result`, strictly alternating."""

    #: Seconds the child may take to take a job or answer it, at least (it starts Python and
    #: NumPy before the first one) ...
    min_timeout = 60.0
    #: ... and at least this many times the child's last fit.
    timeout_factor = 50.0

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self.pid: int | None = None
        #: Peak resident memory of the children so far (VmHWM after exec, read before they end).
        self.peak_rss_mb = 0.0
        #: Seconds the child spent in its last fit.
        self.last_fit_seconds = 0.0

    def start(self) -> None:
        """Start the child if it is not running (:meth:`submit` does this too)."""
        if self._proc is None or self._proc.poll() is not None:
            self._start()

    def timeout(self) -> float:
        """Seconds :meth:`submit` and :meth:`result` wait for the child before killing it."""
        return max(self.min_timeout, self.timeout_factor * self.last_fit_seconds)

    def submit(self, job: dict[str, Any]) -> None:
        self.start()
        assert self._proc is not None and self._proc.stdin is not None
        data = pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            _write_all(self._proc.stdin, data, self.timeout())
        except TimeoutError:
            raise self._hung("take the fit") from None
        except OSError as e:
            self._kill()
            raise CriticWorkerError(f"could not send the fit to the critic worker: {e}") from e

    def result(self) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdout is not None
        try:
            deadline = time.monotonic() + self.timeout()
            (size,) = struct.unpack("<Q", _read_exact(self._proc.stdout, 8, deadline))
            reply = pickle.loads(_read_exact(self._proc.stdout, size, deadline))
        except TimeoutError:
            raise self._hung("answer") from None
        except (EOFError, OSError, pickle.UnpicklingError) as e:
            code = self._kill()
            raise CriticWorkerError(f"the critic worker died (exit code {code}): {e!r}") from e
        if "error" in reply:
            raise CriticWorkerError(f"the critic worker failed: {reply['error']}")
        self.last_fit_seconds = float(reply.get("seconds", 0.0))
        return reply

    def _hung(self, what: str) -> CriticWorkerError:
        seconds, pid = self.timeout(), self.pid
        self._kill()
        return CriticWorkerError(
            f"the critic worker (pid {pid}) did not {what} within {seconds:g} s (stopped or hung); killed it"
        )

    def close(self) -> None:
        """End the child (EOF on its stdin) and wait for it."""
        if self._proc is None:
            return
        self._record_peak()
        proc, self._proc = self._proc, None
        try:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        finally:
            if proc.stdout is not None:
                proc.stdout.close()

    def _start(self) -> None:
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        # The child imports this very trustpg (a source tree on sys.path, or the installed one).
        src = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [os.environ.get("PYTHONPATH")])])
        try:
            # Its own process group: a terminal's Ctrl-C signals the whole foreground group, and
            # the child must live on so the parent can finish the update and checkpoint exactly.
            # The child still ends with the parent: EOF on its stdin.
            # And SIGINT blocked until it ignores it: a group's Ctrl-C while it starts stays
            # pending instead of killing its interpreter half-started (accel.children).
            with sigint_blocked():
                self._proc = subprocess.Popen(
                    [sys.executable, "-u", "-m", "trustpg.accel.critic_worker"],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, process_group=0,
                )  # fmt: skip
        except OSError as e:
            raise CriticWorkerError(f"could not start the critic worker: {e}") from e
        self.pid = self._proc.pid
        _widen_pipe(self._proc.stdin)
        if _CAN_SELECT:  # reads and writes wait in poll() with a deadline (_read_exact, _write_all)
            for stream in (self._proc.stdin, self._proc.stdout):
                assert stream is not None  # both are PIPEs
                os.set_blocking(stream.fileno(), False)
        # An agent dropped without close(): end the child (EOF) when this object is collected.
        weakref.finalize(self, _end, self._proc)

    def _record_peak(self) -> None:
        """The child's own peak RSS. Not ``RUSAGE_CHILDREN``: that also counts the parent's image
        the child had between fork and exec (~300 MB of shared pages it never used)."""
        if self._proc is None:
            return
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{self._proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_rss_mb = max(self.peak_rss_mb, int(line.split()[1]) / 1024)

    def _kill(self) -> int | None:
        self._record_peak()
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.kill()
        return proc.wait()


def _widen_pipe(stream: Any) -> None:
    """Make the pipe to the child hold a whole job (Linux; 1 MiB, the unprivileged maximum), so
    :meth:`CriticProcess.submit` returns at once instead of waiting for the child to drain the
    default 64 KiB in pieces (2-3 ms for a job of 1,024 states and 20 epochs, docs/performance.md)."""
    setpipe_sz = getattr(fcntl, "F_SETPIPE_SZ", 1031) if fcntl is not None else None
    if stream is None or setpipe_sz is None or not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, ValueError):
        fcntl.fcntl(stream.fileno(), setpipe_sz, 1 << 20)


#: poll() works on pipes (not on Windows, where the pipes block without a deadline).
_CAN_SELECT = hasattr(select, "poll")


def _write_all(stream: Any, data: bytes, timeout: float) -> None:
    """Write ``data`` to the pipe ``stream`` (non-blocking fd), TimeoutError after ``timeout`` s."""
    if not _CAN_SELECT:
        stream.write(data)
        stream.flush()
        return
    fd, view, deadline = stream.fileno(), memoryview(data), time.monotonic() + timeout
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            _wait(fd, deadline, write=True)


def _read_exact(stream: Any, n: int, deadline: float) -> bytes:
    """``n`` bytes from the pipe ``stream`` (non-blocking fd); EOFError if it closes first,
    TimeoutError at ``deadline`` (``time.monotonic()``)."""
    if not _CAN_SELECT:
        data = stream.read(n)
        if len(data) < n:
            raise EOFError("the pipe closed")
        return data
    fd, parts, got = stream.fileno(), [], 0
    while got < n:
        try:
            chunk = os.read(fd, n - got)
        except BlockingIOError:
            _wait(fd, deadline, write=False)
            continue
        if not chunk:
            raise EOFError("the pipe closed")
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def _wait(fd: int, deadline: float, write: bool) -> None:
    """Until the pipe ``fd`` is writable (readable, or closed); TimeoutError at ``deadline``."""
    poller = select.poll()
    poller.register(fd, select.POLLOUT if write else select.POLLIN)
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        if poller.poll(left * 1000):
            return


def _end(proc: subprocess.Popen[bytes]) -> None:
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def make_job(
    spec: MLPSpec, optimizer: Adam, obs: Tensor, returns: Tensor, perms: list[Tensor], minibatch_size: int
) -> dict[str, Any]:
    """The worker's job for a float32 CPU critic of this ``spec`` (``critic.mlp_spec()``)."""
    params = spec.parameters()
    flat = torch.cat([p.detach().reshape(-1) for p in params]).numpy()
    index = {id(q): k for k, q in enumerate(optimizer.params)}
    state = [optimizer.state.get(index[id(p)]) for p in params]
    if all(s is not None for s in state):
        m = torch.cat([s["exp_avg"].reshape(-1) for s in state]).numpy()  # type: ignore[index]
        v = torch.cat([s["exp_avg_sq"].reshape(-1) for s in state]).numpy()  # type: ignore[index]
        step = float(state[0]["step"])  # type: ignore[index]
    else:  # no step taken yet (or a reset after a non-finite fit)
        m, v, step = np.zeros_like(flat), np.zeros_like(flat), 0.0
    return {
        "params": flat, "shapes": [tuple(p.shape) for p in params],
        "activation": spec.activation, "alpha": spec.alpha,
        "obs": obs.detach().numpy(), "returns": returns.detach().numpy(),
        "perms": np.stack([p.numpy() for p in perms]).astype(_index_dtype(obs.shape[0])),
        "minibatch_size": minibatch_size,
        "lr": optimizer.lr, "betas": tuple(optimizer.betas), "eps": optimizer.eps,
        "exp_avg": m, "exp_avg_sq": v, "step": step,
    }  # fmt: skip


def _index_dtype(n: int) -> type[np.integer]:
    """int32 indices (half the bytes of int64 through the pipe) unless the batch needs more."""
    return np.int32 if n < 2**31 else np.int64


def apply_result(spec: MLPSpec, optimizer: Adam, reply: dict[str, Any]) -> tuple[float, float]:
    """Load the worker's parameters and Adam state into the critic of ``spec`` and ``optimizer``."""
    params = spec.parameters()
    index = {id(q): k for k, q in enumerate(optimizer.params)}
    i = 0
    with torch.no_grad():
        for p in params:
            n = p.numel()
            p.copy_(torch.from_numpy(reply["params"][i : i + n]).view_as(p))
            k = index[id(p)]
            optimizer.state[k] = {
                "step": torch.tensor(float(reply["step"]), dtype=torch.float32),
                "exp_avg": torch.from_numpy(reply["exp_avg"][i : i + n].copy()).view_as(p),
                "exp_avg_sq": torch.from_numpy(reply["exp_avg_sq"][i : i + n].copy()).view_as(p),
            }
            i += n
    return float(reply["before"]), float(reply["after"])
