"""What a run needs around the training loop: stopping on SIGINT/SIGTERM, and its summary."""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Any

from trustpg.io.logger import software_versions

if TYPE_CHECKING:
    from trustpg.train.agent import Agent


class StopFlag:
    """While installed, SIGINT and SIGTERM set :attr:`raised`: the training loop finishes the
    current update, checkpoints and returns. A second signal gives up at once (KeyboardInterrupt).
    Outside the main thread signals cannot be handled, and are left alone. A SIGINT that is
    ignored when the flag is installed (SIG_IGN: a shell's background job ``cmd &``, ``nohup``)
    stays ignored: whoever started the process said Ctrl-C is not for it; SIGTERM still stops."""

    def __init__(self) -> None:
        self.raised = False
        self._old: dict[int, Any] = {}

    def _handler(self, signum: int, _frame: Any) -> None:
        if self.raised:  # second signal: give up immediately
            raise KeyboardInterrupt
        self.raised = True

    def install(self) -> None:
        self.raised = False
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                if sig == signal.SIGINT and signal.getsignal(sig) is signal.SIG_IGN:
                    continue
                self._old[sig] = signal.signal(sig, self._handler)
        except ValueError:  # not the main thread: leave signals alone
            pass

    def restore(self) -> None:
        for sig, h in self._old.items():
            signal.signal(sig, h)
        self._old.clear()


def run_summary(agent: Agent, seconds: float) -> dict[str, Any]:
    """What ``summary.json`` says about a finished run (the command line adds its evaluation).
    ``train_seconds`` is the time of every update in every session of the run (a resumed run's
    too: metrics.csv's last ``wall_time``); ``session_seconds`` is this process's ``learn``,
    checkpoints and periodic evaluations included."""
    fit = agent.trainer.critic_fit
    fit.close()  # the worker's peak memory is read as it ends (the next fit starts a new one)
    return {
        "env_steps": agent.num_timesteps, "train_seconds": agent.trainer.wall_time,
        "session_seconds": seconds,
        "peak_rss_mb": peak_rss_mb() + fit.worker_peak_rss_mb,
        "peak_rss_critic_worker_mb": fit.worker_peak_rss_mb, "software": software_versions(),
    }  # fmt: skip


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports ru_maxrss in KiB). The
    summary adds the critic worker's own peak (read by the worker's parent before it ends)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
