"""Time limits on environment steps (issue 18): nothing waits forever without a word.

:class:`TimedVectorEnv` steps and resets a vector env so that a step (or reset) that runs longer
than ``step_timeout`` seconds raises :class:`StepTimeout`, and an async worker process that exits
raises :class:`WorkerExited` (with its exit code) instead of the pipe's bare ``EOFError``:

- Gymnasium's ``AsyncVectorEnv`` (unwrapped): ``step_async`` + ``step_wait(timeout)``; the
  sub-envs that did not answer are named. Any thread, any code in the worker (Python or C).
- Any other vector env (sync, a wrapped async env, EnvPool) steps in this process. In the main
  thread a SIGALRM timer raises :class:`StepTimeout` inside the step: it interrupts pure-Python
  loops and blocking calls such as ``time.sleep``, and C code (a MuJoCo ``mj_step``) as soon as
  it returns to Python. Off the main thread a watchdog thread raises it asynchronously
  (``PyThreadState_SetAsyncExc``): pure-Python code only. Native code that never returns to
  Python cannot be stopped in-process: run such envs with ``vectorization="async"``.

Cost: the timer is armed once per guarded block (a rollout) and re-arms itself when it fires,
at most once per ``step_timeout`` seconds; a step only stores a ``time.monotonic()`` reading:
~0.1-0.3 µs per vector step, where arming ``setitimer`` around every step would cost ~2 µs; for
8 envs that is ~0.03 % of Hopper's stepping (~120 µs per env step) and ~0.3 % of CartPole's (~10 µs).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

import gymnasium as gym
from gymnasium.vector.async_vector_env import AsyncState

#: How often a timed-out step is interrupted again if the env swallows :class:`StepTimeout`.
RETRY_SECONDS = 1.0
#: How long to wait for the exit status of an async worker whose pipe closed.
EXIT_STATUS_WAIT = 2.0
_monotonic = time.monotonic


class StepTimeout(BaseException):
    """A step or reset ran past its time limit. A ``BaseException`` (like ``KeyboardInterrupt``)
    so that an env's own ``except Exception`` does not swallow it. ``envs``: the sub-envs that did
    not answer, when known."""

    def __init__(self, envs: tuple[int, ...] = ()) -> None:
        super().__init__(envs)
        self.envs = envs


class WorkerExited(RuntimeError):
    """The worker process of sub-env ``env`` of an ``AsyncVectorEnv`` ended (``exitcode``)."""

    def __init__(self, env: int, exitcode: int) -> None:
        how = (
            f"was killed by signal {_signal_name(-exitcode)}" if exitcode < 0 else f"exited (code {exitcode})"
        )
        super().__init__(f"environment {env}'s worker process {how}")
        self.env, self.exitcode = env, exitcode


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


class Deadline:
    """Raises :class:`StepTimeout` in the thread inside :meth:`watch` once ``started`` (a
    ``time.monotonic()`` reading, 0 when no step runs) is ``timeout`` seconds old."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.started = 0.0
        self.expired = False
        self._depth = 0
        self._old_handler: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._target = 0

    @contextlib.contextmanager
    def watch(self) -> Iterator[None]:
        """Arm the timer for the block (re-entrant: nested blocks share the outer one's timer)."""
        self._depth += 1
        if self._depth > 1:
            try:
                yield
            finally:
                self._depth -= 1
            return
        self.started, self.expired = 0.0, False
        uses_signal = self._arm_signal()
        if not uses_signal:
            self._arm_thread()
        try:
            yield
        finally:
            self._depth -= 1
            self.started = 0.0
            if uses_signal:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, self._old_handler)
            else:
                self._disarm_thread()

    # -- main thread: SIGALRM ------------------------------------------------------------------
    def _arm_signal(self) -> bool:
        """Use SIGALRM unless off the main thread or somebody else's alarm is set (e.g. pytest-timeout)."""
        if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
            return False
        if signal.getsignal(signal.SIGALRM) not in (signal.SIG_DFL, signal.SIG_IGN, None):
            return False
        if signal.getitimer(signal.ITIMER_REAL)[0] > 0:
            return False
        self._old_handler = signal.signal(signal.SIGALRM, self._on_alarm)
        signal.setitimer(signal.ITIMER_REAL, self.timeout)
        return True

    def _on_alarm(self, signum: int, frame: Any) -> None:
        left = self._left()
        signal.setitimer(signal.ITIMER_REAL, RETRY_SECONDS if left is None else left)
        if left is None:
            self.expired = True
            raise StepTimeout

    def _left(self) -> float | None:
        """Seconds until the running step's deadline (or a full period if none runs); None: passed."""
        started = self.started
        if not started:
            return self.timeout
        left = started + self.timeout - time.monotonic()
        return None if left <= 1e-4 else left

    # -- other threads: a watchdog thread ------------------------------------------------------
    def _arm_thread(self) -> None:
        self._target = threading.get_ident()
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch_thread, name="trustpg-step-watchdog", daemon=True)
        self._thread.start()

    def _watch_thread(self) -> None:
        wait = self.timeout
        while not self._stop.wait(wait):
            left = self._left()
            if left is None:
                self.expired = True
                _async_raise(self._target, StepTimeout)
            wait = RETRY_SECONDS if left is None else left

    def _disarm_thread(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        _async_raise(self._target, None)  # drop an exception set just as the step ended


def _async_raise(thread_id: int, exc: type[BaseException] | None) -> None:
    import ctypes

    arg = None if exc is None else ctypes.py_object(exc)
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), arg)


class TimedVectorEnv:
    """``step``/``reset`` of a vector env under a time limit (0 = none); call them inside
    :meth:`guard`. After :class:`StepTimeout` or :class:`WorkerExited` call :meth:`abandon`."""

    def __init__(self, env: gym.vector.VectorEnv, timeout: float) -> None:
        self.env, self.timeout = env, timeout
        self._async = env if isinstance(env, gym.vector.AsyncVectorEnv) else None
        self.deadline = Deadline(timeout) if timeout > 0 and self._async is None else None
        self._deadline = self.deadline or Deadline(0.0)  # typed for step(), used only with a limit
        # The step for this env, bound once (it runs every step): the async env's own pipe
        # timeout, the watchdog's, or the env's own step when there is nothing to add.
        if self._async is not None:
            self.step = self._async_step  # type: ignore[method-assign]
        elif self.deadline is None:
            self.step = env.step  # type: ignore[method-assign]

    def guard(self) -> contextlib.AbstractContextManager[None]:
        return self.deadline.watch() if self.deadline is not None else contextlib.nullcontext()

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        d = self._deadline
        d.started = _monotonic()
        try:
            out = self.env.step(actions)
        finally:
            d.started = 0.0
        if d.expired:  # the env caught StepTimeout and carried on
            raise StepTimeout
        return out

    def _async_step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        return self._call(lambda e: e.step_async(actions), lambda e, t: e.step_wait(t))

    def reset(self, seed: int) -> tuple[Any, dict[str, Any]]:
        if self._async is not None:
            return self._call(lambda e: e.reset_async(seed=seed), lambda e, t: e.reset_wait(t))
        d = self.deadline
        if d is None:
            return self.env.reset(seed=seed)
        d.started = time.monotonic()
        try:
            out = self.env.reset(seed=seed)
        finally:
            d.started = 0.0
        if d.expired:
            raise StepTimeout
        return out

    def _call(self, send: Any, wait: Any) -> Any:
        env = self._async
        assert env is not None
        try:
            send(env)
            with warnings.catch_warnings():
                # A worker whose env raised: gymnasium warns its traceback in three red lines before
                # raising it here; the rollout reports it in one line (EnvFault), as for sync envs.
                warnings.filterwarnings("ignore", _WORKER_ERROR, UserWarning, _ASYNC_MODULE)
                return wait(env, self.timeout if self.timeout > 0 else None)
        except multiprocessing.TimeoutError:
            silent = [i for i, p in enumerate(env.parent_pipes) if p is not None and not p.poll(0)]
            raise StepTimeout(tuple(silent)) from None
        except (EOFError, OSError) as e:  # a closed pipe: did a worker process end?
            exited = _exited_worker(env)
            if exited is None:
                raise
            raise exited from e

    def abandon(self) -> None:
        """Kill the worker processes of an async env (a hung or dead worker would block ``close``);
        SIGKILL, as forked workers may have inherited this process's SIGTERM handler."""
        base = self.env.unwrapped
        if not isinstance(base, gym.vector.AsyncVectorEnv) or base.closed:
            return
        for proc in base.processes:
            if proc.is_alive():
                proc.kill()
        for proc in base.processes:
            proc.join(timeout=EXIT_STATUS_WAIT)
        base._state = AsyncState.DEFAULT  # nothing to wait for: no warning from close
        with contextlib.suppress(Exception):
            base.close(terminate=True)
        base.closed = True


#: gymnasium's warnings (gymnasium.logger.error) about a worker's exception, colour codes and all.
_WORKER_ERROR = (
    r"(\x1b\[\d+m)?ERROR: (Received the following error from Worker|Traceback|Raising the last exception)"
)
_ASYNC_MODULE = r"gymnasium\.vector\.async_vector_env"


def _exited_worker(env: gym.vector.AsyncVectorEnv) -> WorkerExited | None:
    """The first worker process (of an env still in use) that has ended, waiting briefly for the
    exit status of a worker whose pipe closed as it died."""
    deadline = time.monotonic() + EXIT_STATUS_WAIT
    while True:
        for i, (proc, pipe) in enumerate(zip(env.processes, env.parent_pipes)):
            if pipe is not None and proc.exitcode is not None:
                return WorkerExited(i, proc.exitcode)
        if time.monotonic() > deadline:
            return None
        time.sleep(0.01)
