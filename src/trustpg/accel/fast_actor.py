"""Sampling actions during collection with NumPy, for any actor that declares an
:class:`~trustpg.nets.policies.MLPSpec` (``actor.mlp_spec()``, e.g. the default ``Actor``).

Collection calls the policy once per vector step on a handful of observations, where PyTorch's
per-call overhead (module dispatch, one kernel launch per op, the Distribution object) costs
~90–140 µs per call against ~25 µs for the same three small matmuls in NumPy; on CartPole that
overhead is most of the training time (docs/performance.md). :class:`NumpyActor` takes a
snapshot of the actor's weights (refreshed every batch, after each update), runs them through
the one NumPy MLP kernel (:mod:`trustpg.accel.np_mlp`) and samples from exactly the
distribution the spec's head defines. Its randomness is drawn from the same ``torch.Generator``
as :meth:`Distribution.sample` (uniforms, normals, exponentials; the Beta policy's Gamma rejection
sampler round by round), so runs stay seeded and checkpointable.
The update never uses these numbers: it recomputes π_old from the stored observations and
actions with the PyTorch actor. An actor without a spec samples through its own forward, and
:meth:`NumpyActor.attach` says so once in the log.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from trustpg.accel import np_mlp
from trustpg.accel.fallback import announce_off
from trustpg.nets.policies import MLPSpec, mlp_spec_of

_HEADS = ("gaussian", "categorical", "bernoulli", "multicategorical", "beta")
#: torch's softplus returns x itself above this threshold (torch.nn.functional.softplus's default).
_SOFTPLUS_THRESHOLD = 20.0


class NumpyActor:
    """A weight snapshot of an MLP actor that samples actions ``[B, ...]`` from observations."""

    def __init__(self, spec: MLPSpec) -> None:
        if why := _unsupported(spec):
            raise ValueError(f"NumpyActor cannot sample this actor: {why}")
        self.kind, self.nvec, self.activation, self.alpha = spec.head, spec.nvec, spec.activation, spec.alpha
        self.mask_dim = spec.mask_dim
        self.layers = [
            (np.ascontiguousarray(w.detach().numpy().T), b.detach().numpy().copy()) for w, b in spec.layers()
        ]
        if spec.log_std is not None:
            self.std = np.exp(spec.log_std.detach().numpy())
        if spec.bounds is not None:  # the Beta policy's box; x in (0, 1) is kept eps inside it
            self.low = spec.bounds[0].detach().numpy().astype(np.float32)
            self.scale = spec.bounds[1].detach().numpy().astype(np.float32) - self.low
        self._buffers: dict[tuple[tuple[int, ...], str], tuple[torch.Tensor, np.ndarray]] = {}

    @classmethod
    def attach(cls, actor: nn.Module) -> NumpyActor | None:
        """The NumPy sampler of ``actor``, or None (logged once, with the reason) when its
        ``mlp_spec()`` is None or the spec is not one the sampler handles."""
        spec, why = mlp_spec_of(actor)
        if spec is not None:
            why = _unsupported(spec)
            if not why:
                return cls(spec)
        announce_off(
            "fast NumPy sampler", f"{why} (mlp_spec() is None)" if spec is None else why,
            "sampling uses the torch module (~3x slower per step)",
        )  # fmt: skip
        return None

    def outputs(self, obs: np.ndarray) -> np.ndarray:
        """The network's output (logits or Gaussian mean) for float32 observations ``[B, D]``."""
        return np_mlp.forward(self.layers, self.activation, obs, self.alpha)[-1]

    def sample(self, obs: np.ndarray, generator: torch.Generator) -> np.ndarray:
        """One action per observation, as :meth:`Distribution.sample` of the actor's distribution."""
        out = self.outputs(obs)
        if self.kind == "gaussian":
            out += self.std * self._draw(out.shape, generator, "normal")
            return out
        if self.kind == "beta":
            return self._beta(out, generator)
        if self.kind == "bernoulli":
            u = self._draw(out.shape, generator, "uniform")
            return (u < 1.0 / (1.0 + np.exp(-out))).astype(np.float32)
        if self.mask_dim:  # invalid logits as in core.masked.masked_logits
            out = _masked(out, obs[:, -self.mask_dim :] > 0.5, self.nvec or (out.shape[-1],))
        if self.kind == "categorical":
            return _categorical(out, self._draw(out.shape, generator, "exponential"))
        blocks = np.split(out, np.cumsum(self.nvec)[:-1], axis=-1)  # multicategorical
        return np.stack([_categorical(z, self._draw(z.shape, generator, "exponential")) for z in blocks], -1)

    def _beta(self, out: np.ndarray, generator: torch.Generator) -> np.ndarray:
        """:meth:`trustpg.core.beta.Beta.sample`: k = 1 + softplus(out) = [α, β], Gamma(k) draws
        by :func:`_gamma` on the same generator draws, a = low + (high − low)·X/(X + Y)."""
        k = 1.0 + np.where(
            out > _SOFTPLUS_THRESHOLD, out, np.log1p(np.exp(np.minimum(out, _SOFTPLUS_THRESHOLD)))
        )
        g = self._gamma(k, generator)
        a = out.shape[-1] // 2
        eps = np.finfo(np.float32).eps
        x = np.clip(g[:, :a] / (g[:, :a] + g[:, a:]), eps, 1.0 - eps)
        return (self.low + self.scale * x).astype(np.float32)

    def _gamma(self, k: np.ndarray, generator: torch.Generator) -> np.ndarray:
        """Marsaglia–Tsang Gamma(k) draws for k ≥ 1 as :func:`trustpg.core.beta.gamma_sample`:
        each round a normal then a uniform for every entry, until every entry is accepted."""
        d = k - 1.0 / 3.0
        c = 1.0 / np.sqrt(9.0 * d)
        out = np.zeros_like(k)
        todo = np.ones(k.shape, bool)
        while todo.any():
            x = self._draw(k.shape, generator, "normal")
            u = self._draw(k.shape, generator, "uniform")
            v = (1.0 + c * x) ** 3
            with np.errstate(divide="ignore"):  # log 0 = -inf: accepted, as in torch
                ok = (v > 0) & (np.log(u) < 0.5 * x * x + d - d * v + d * np.log(np.maximum(v, 1e-30)))
            out = np.where(todo & ok, d * v, out)
            todo &= ~ok
        return out

    def _draw(self, shape: tuple[int, ...], generator: torch.Generator, kind: str) -> np.ndarray:
        """Standard normal, uniform [0, 1) or Exp(1) draws from ``generator`` into a reused buffer
        (the same numbers as ``torch.randn``/``torch.rand``/``exponential_`` on a new tensor; the
        NumPy view is valid until the next draw of that shape and kind)."""
        key = (shape, kind)
        if key not in self._buffers:
            t = torch.empty(shape)
            self._buffers[key] = (t, t.numpy())
        t, view = self._buffers[key]
        if kind == "normal":
            t.normal_(generator=generator)
        elif kind == "uniform":
            t.uniform_(generator=generator)
        else:
            t.exponential_(1.0, generator=generator)
        return view


def _unsupported(spec: MLPSpec) -> str:
    """Why the sampler cannot run ``spec`` ("" if it can): a float32 CPU actor with an action head."""
    if spec.head == "beta" and spec.bounds is None:
        return "a 'beta' head without the action box (low, high buffers)"
    if spec.head not in _HEADS:
        return f"a {spec.head!r} head is not an action distribution"
    if any(p.dtype != torch.float32 or p.device.type != "cpu" for p in spec.parameters()):
        return "the actor's parameters are not float32 on the CPU"
    return ""


def _masked(logits: np.ndarray, valid: np.ndarray, nvec: tuple[int, ...]) -> np.ndarray:
    """Logits with invalid entries at the dtype's most negative finite value, per block of ``nvec``;
    a block with no valid entry stays unmasked (:func:`trustpg.core.masked.masked_logits`)."""
    blocks = np.split(valid, np.cumsum(nvec)[:-1], axis=-1)
    valid = np.concatenate([v | ~v.any(-1, keepdims=True) for v in blocks], axis=-1)
    return np.where(valid, logits, np.finfo(logits.dtype).min)


def _categorical(logits: np.ndarray, e: np.ndarray) -> np.ndarray:
    """argmax_k p_k / E_k with E_k ~ Exp(1) draws ``e``: a draw from p (the exponential race),
    which is how ``torch.multinomial(p, 1)`` samples, with the same draws from its generator."""
    return np.argmax(np.exp(logits - logits.max(-1, keepdims=True)) / e, axis=-1).astype(np.int64)
