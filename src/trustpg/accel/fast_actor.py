"""Sampling actions during collection with NumPy, for the default MLP :class:`~trustpg.nets.policies.Actor`.

Collection calls the policy once per vector step on a handful of observations, where PyTorch's
per-call overhead (module dispatch, one kernel launch per op, the Distribution object) costs
~90–140 µs per call against ~25 µs for the same three small matmuls in NumPy; on CartPole that
overhead is most of the training time (docs/performance.md). :class:`NumpyActor` takes a
snapshot of the actor's weights (refreshed every batch, after each update) and samples from
exactly the distribution the actor defines. Its randomness is drawn from the same
``torch.Generator`` as :meth:`Distribution.sample` (uniforms or normals), so runs stay seeded
and checkpointable. The update never uses these numbers: it recomputes π_old from the stored
observations and actions with the PyTorch actor. Custom policies use the PyTorch path.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from trustpg.nets.policies import Actor

_ACTIVATIONS = (nn.Tanh, nn.ReLU, nn.ELU)


class NumpyActor:
    """A weight snapshot of an :class:`Actor` that samples actions ``[B, ...]`` from observations."""

    def __init__(self, actor: Actor) -> None:
        if not self.supports(actor):
            raise TypeError("NumpyActor needs a trustpg.nets.policies.Actor of Linear/Tanh/ReLU/ELU layers")
        self.kind, self.nvec = actor.kind, actor.nvec
        self.layers: list[tuple[np.ndarray, np.ndarray] | nn.Module] = []
        for layer in actor.net:
            if isinstance(layer, nn.Linear):
                w = layer.weight.detach().numpy()
                self.layers.append((np.ascontiguousarray(w.T), layer.bias.detach().numpy().copy()))
            else:
                self.layers.append(layer)
        if self.kind == "gaussian":
            self.std = np.exp(actor.log_std.detach().numpy())
        self._buffers: dict[tuple[tuple[int, ...], str], tuple[torch.Tensor, np.ndarray]] = {}

    @staticmethod
    def supports(actor: nn.Module) -> bool:
        """True for the default Actor (exact type) built from float32 Linear layers with biases."""
        if type(actor) is not Actor:
            return False
        for layer in actor.net:
            if isinstance(layer, nn.Linear):
                if layer.bias is None or layer.weight.dtype != torch.float32:
                    return False
            elif not isinstance(layer, _ACTIVATIONS):
                return False
        return True

    def outputs(self, obs: np.ndarray) -> np.ndarray:
        """The network's output (logits or Gaussian mean) for float32 observations ``[B, D]``."""
        h = obs
        for layer in self.layers:
            if isinstance(layer, tuple):
                h = np.matmul(h, layer[0])  # a new array: the in-place ops below never touch obs
                h += layer[1]
            elif isinstance(layer, nn.Tanh):
                np.tanh(h, out=h)
            elif isinstance(layer, nn.ReLU):
                np.maximum(h, 0, out=h)
            else:  # ELU
                h = np.where(h > 0, h, layer.alpha * np.expm1(np.minimum(h, 0))).astype(np.float32)
        return h

    def sample(self, obs: np.ndarray, generator: torch.Generator) -> np.ndarray:
        """One action per observation, as :meth:`Distribution.sample` of the actor's distribution."""
        out = self.outputs(obs)
        if self.kind == "gaussian":
            out += self.std * self._draw(out.shape, generator, "normal")
            return out
        if self.kind == "bernoulli":
            u = self._draw(out.shape, generator, "uniform")
            return (u < 1.0 / (1.0 + np.exp(-out))).astype(np.float32)
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


def _categorical(logits: np.ndarray, e: np.ndarray) -> np.ndarray:
    """argmax_k p_k / E_k with E_k ~ Exp(1) draws ``e``: a draw from p (the exponential race),
    which is how ``torch.multinomial(p, 1)`` samples, with the same draws from its generator."""
    return np.argmax(np.exp(logits - logits.max(-1, keepdims=True)) / e, axis=-1).astype(np.int64)
