"""Fitting the critic V_φ(s) to the λ-returns by minibatch regression, optionally in the background."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import torch
from torch import Tensor, nn

from trustpg.accel.critic_process import CriticProcess, apply_result, make_job
from trustpg.accel.fallback import announce_off
from trustpg.accel.mlp_value import MSEGradient, unsupported
from trustpg.core.linalg import flat_params, set_flat_params
from trustpg.core.optim import Adam
from trustpg.errors import CriticWorkerError
from trustpg.nets.policies import MLPSpec, mlp_spec_of

log = logging.getLogger("trustpg")


def fit_value(
    critic: nn.Module,
    optimizer: Adam,
    obs: Tensor,
    returns: Tensor,
    *,
    epochs: int,
    minibatch_size: int,
    generator: torch.Generator,
    perms: list[Tensor] | None = None,
) -> tuple[float, float]:
    """Minimise mean (V_φ(s) − R)² with ``epochs`` shuffled passes of minibatches.

    A critic that declares an MLP spec (``critic.mlp_spec()``, as the default one) has its gradient
    computed from the one MLP kernel (:mod:`trustpg.accel.mlp_value`), any other by autograd (said
    once in the log); both visit the same minibatches in the same order.

    Args:
        obs: states ``[B, D]``; returns: regression targets ``[B]`` (GAE λ-returns Â + V).
        generator: the only source of randomness (minibatch order).
        perms: one permutation per epoch, already drawn from ``generator`` (then not used).
    Returns:
        (loss before fitting, loss after fitting), full-batch mean squared errors.
    """
    with torch.no_grad():
        before = float((critic(obs) - returns).pow(2).mean())
    n = obs.shape[0]
    if returns.dim() == 2:  # whole sequences [N, T] (a recurrent critic): minibatches of sequences
        minibatch_size = max(1, minibatch_size // returns.shape[1])
    by_hand = _by_hand(critic)
    for epoch in range(epochs):
        perm = perms[epoch] if perms is not None else torch.randperm(n, generator=generator)
        if by_hand is not None:  # the default MLP: the kernel's gradient, ~1.7× faster per minibatch
            xs, ys = obs[perm], returns[perm]
            for start in range(0, n, minibatch_size):
                by_hand(xs[start : start + minibatch_size], ys[start : start + minibatch_size])
                optimizer.step()
            continue
        for start in range(0, n, minibatch_size):
            idx = perm[start : start + minibatch_size]
            loss = (critic(obs[idx]) - returns[idx]).pow(2).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        after = float((critic(obs) - returns).pow(2).mean())
    return before, after


class CriticFitter:
    """Fits the critic on batch k *between* update k and the values of batch k+1.

    The critic is only needed again when batch k+1's values are computed, after its collection,
    and collection uses only the actor. So with ``overlap`` the fit runs on a background thread
    while batch k+1 is collected (PyTorch and MuJoCo release the GIL for their numerical work,
    so the second core does it); without, it runs when :meth:`finish` is called. Both give
    bit-identical critics; the losses of the fit are reported by the update that finished it.
    A fit that leaves non-finite parameters is undone (critic restored, Adam state reset).
    """

    def __init__(
        self, critic: nn.Module, optimizer: Adam, generator: torch.Generator,
        *, epochs: int, minibatch_size: int, overlap: bool, process: bool = False,
    ) -> None:  # fmt: skip
        self.critic, self.optimizer, self.generator = critic, optimizer, generator
        self.epochs, self.minibatch_size, self.overlap = epochs, minibatch_size, overlap
        #: With ``overlap``, fit a default float32 MLP critic in a NumPy child process instead of
        #: a thread (:mod:`trustpg.accel.critic_process`; no GIL hand-overs with the env stepping).
        if process and not overlap:  # the worker exists to overlap the fit with sampling
            announce_off("critic worker process", "the fit is not overlapped with sampling "
                         "(critic_overlap off, or Ray workers sample)",
                         "the critic is fitted in this process after each batch", costly=False)  # fmt: skip
        self.spec = _process_spec(critic) if process and overlap else None
        self.process = self.spec is not None
        self._worker: CriticProcess | None = None
        #: Peak RSS of the worker processes that have ended, MiB (0 without a worker).
        self.worker_peak_rss_mb = 0.0
        self._sent: tuple[Tensor, Tensor, list[Tensor]] | None = None
        #: (before, after) losses of the last finished fit, not yet reported in a metrics row.
        self.losses: tuple[float, float] = (math.nan, math.nan)
        self._job: Callable[[], tuple[float, float]] | None = None
        self._future: Future[tuple[float, float]] | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._backup: Tensor | None = None

    def start(self, obs: Tensor, returns: Tensor) -> None:
        """Schedule the fit of the critic to ``returns`` (finishing any earlier one first)."""
        self.finish()
        self._backup = flat_params(self.critic)
        if self.spec is not None:
            perms = [torch.randperm(obs.shape[0], generator=self.generator) for _ in range(self.epochs)]
            self._worker = self._worker or CriticProcess()
            try:
                self._worker.submit(
                    make_job(self.spec, self.optimizer, obs, returns, perms, self.minibatch_size)
                )
            except CriticWorkerError as e:
                log.warning("%s; fitting the critic in this process instead", e)
                self._job = lambda: self._fit_here(obs, returns, perms)
                return
            self._sent = (obs, returns, perms)
            return

        def job() -> tuple[float, float]:
            with torch.enable_grad():  # may be called from inside a no_grad collection
                return fit_value(
                    self.critic, self.optimizer, obs, returns, epochs=self.epochs,
                    minibatch_size=self.minibatch_size, generator=self.generator,
                )  # fmt: skip

        if self.overlap:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="trustpg-critic")
            self._future = self._pool.submit(job)
        else:
            self._job = job

    def prepare(self) -> None:
        """Start the worker process now (it starts with the first fit otherwise); a no-op without
        ``process``. A worker that cannot start is reported by the first fit, which then runs here."""
        if self.process and self._worker is None:
            self._worker = CriticProcess()
            with contextlib.suppress(CriticWorkerError):
                self._worker.start()

    def finish(self) -> None:
        """Wait for (or run) the scheduled fit; a no-op if none is pending."""
        if self._sent is not None:
            (obs, returns, perms), self._sent = self._sent, None
            assert self._worker is not None and self.spec is not None
            try:
                losses = apply_result(self.spec, self.optimizer, self._worker.result())
            except CriticWorkerError as e:  # the inputs are still here: redo the fit in-process
                log.warning("%s; fitting the critic in this process instead", e)
                losses = self._fit_here(obs, returns, perms)
        elif self._future is not None:
            future, self._future = self._future, None
            losses = future.result()
        elif self._job is not None:
            job, self._job = self._job, None
            losses = job()
        else:
            return
        self.losses = losses
        if self._backup is not None and not torch.isfinite(flat_params(self.critic)).all():
            set_flat_params(self.critic, self._backup)
            self.optimizer.state.clear()
            log.warning("critic fit gave non-finite parameters; critic restored, its Adam state reset")
        self._backup = None

    def _fit_here(self, obs: Tensor, returns: Tensor, perms: list[Tensor]) -> tuple[float, float]:
        with torch.enable_grad():
            return fit_value(
                self.critic, self.optimizer, obs, returns, epochs=self.epochs,
                minibatch_size=self.minibatch_size, generator=self.generator, perms=perms,
            )  # fmt: skip

    def take_losses(self) -> tuple[float, float]:
        """The losses of the last finished fit, once (NaN if none finished since)."""
        losses, self.losses = self.losses, (math.nan, math.nan)
        return losses

    def close(self) -> None:
        """Finish a pending fit (an error in it is logged, not raised) and stop the thread."""
        try:
            self.finish()
        except Exception:  # closing must not mask the error that led here
            log.exception("the pending critic fit failed")
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._worker is not None:
            self._worker.close()
            self.worker_peak_rss_mb = max(self.worker_peak_rss_mb, self._worker.peak_rss_mb)
            self._worker = None


def _by_hand(critic: nn.Module) -> MSEGradient | None:
    """The kernel's gradient of ``critic`` if it declares an MLP spec it handles, else None
    (said once in the log)."""
    spec, why = mlp_spec_of(critic)
    if spec is not None and not (why := unsupported(spec)):
        return MSEGradient(spec)
    why = f"{why} (mlp_spec() is None)" if spec is None else why
    announce_off("kernel critic gradient", why, "the critic is fitted by autograd (~1.7x slower a minibatch)")
    return None


def _process_spec(critic: nn.Module) -> MLPSpec | None:
    """The critic's spec when the worker process can fit it (a float32 CPU value MLP), else None
    (said once in the log)."""
    spec, why = mlp_spec_of(critic)
    if spec is not None:
        why = unsupported(spec)
        if not why and any(p.dtype != torch.float32 for p in spec.parameters()):
            why = "the critic's parameters are not float32"
        if not why:
            return spec
    why = f"{why} (mlp_spec() is None)" if spec is None else why
    announce_off("critic worker process", why, "the critic is fitted on a thread (~2.7x slower)")
    return None
