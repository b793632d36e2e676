"""Sampling actions during collection with NumPy, for any actor that declares an
:class:`~trustpg.nets.policies.MLPSpec` (``actor.mlp_spec()``, e.g. the default ``Actor``).

Collection calls the policy once per vector step on a handful of observations, where PyTorch's
per-call overhead (module dispatch, one kernel launch per op, the Distribution object) costs
~90–140 µs per call against ~25 µs for the same three small matmuls in NumPy; on CartPole that
overhead is most of the training time (docs/performance.md). :class:`NumpyActor` takes a
snapshot of the actor's weights (refreshed every batch, after each update), runs them through
the one NumPy MLP kernel (:mod:`trustpg.accel.np_mlp`) and samples from exactly the
distribution the spec's head defines. Its randomness is drawn from the same ``torch.Generator``
as :meth:`Distribution.sample` (uniforms or normals), so runs stay seeded and checkpointable.
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

_HEADS = ("gaussian", "categorical", "bernoulli", "multicategorical")


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
        if self.kind == "bernoulli":
            u = self._draw(out.shape, generator, "uniform")
            return (u < 1.0 / (1.0 + np.exp(-out))).astype(np.float32)
        if self.mask_dim:  # invalid logits as in core.masked.masked_logits
            out = _masked(out, obs[:, -self.mask_dim :] > 0.5, self.nvec or (out.shape[-1],))
        if self.kind == "categorical":
            return _categorical(out, self._draw(out.shape, generator, "exponential"))
        blocks = np.split(out, np.cumsum(self.nvec)[:-1], axis=-1)  # multicategorical
        return np.stack([_categorical(z, self._draw(z.shape, generator, "exponential")) for z in blocks], -1)

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
    if spec.head == "beta":  # Gamma rejection sampling: per-round draws, not worth a NumPy copy
        return "the Beta policy is sampled by its torch distribution (rejection sampling)"
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
