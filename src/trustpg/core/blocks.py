"""Product distributions over concatenated parameter blocks, written once.

:class:`~trustpg.core.distributions.MultiCategorical` and
:class:`~trustpg.core.masked.MaskedMultiCategorical` are D independent distributions side by side,
their parameters D blocks of sizes ``nvec`` concatenated along the last dimension. Both hold a
:class:`Blocks` of their parts and delegate to it (composition, not a shared base class: DESIGN §6).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol, final

import torch
from torch import Tensor


class Part(Protocol):
    """What :class:`Blocks` asks of each part (a :class:`~trustpg.core.distributions.Distribution`
    has it all)."""

    def log_prob(self, actions: Tensor) -> Tensor: ...

    def entropy(self) -> Tensor: ...

    def mode(self) -> Tensor: ...

    def sample(self, generator: torch.Generator | None = None) -> Tensor: ...

    def metric(self, tangents: tuple[Tensor, ...]) -> tuple[Tensor, ...]: ...

    def kl_to(self, other: Any) -> Tensor: ...


def check_nvec(logits: Tensor, nvec: tuple[int, ...] | list[int]) -> tuple[int, ...]:
    """``nvec`` as a tuple of ints, if the last dimension of ``logits`` holds its blocks (ValueError
    otherwise)."""
    out = tuple(int(n) for n in nvec)
    if not out or min(out) < 1 or sum(out) != logits.shape[-1]:
        raise ValueError(
            f"logits have {logits.shape[-1]} entries per sample; nvec {out} needs "
            f"sum(nvec) = {sum(out)} (and every n_d >= 1)"
        )
    return out


@final
class Blocks:
    """The parts d = 1..D of a product distribution, block d of size ``nvec[d]``, actions ``[B, D]``.

    log p, entropy and KL are sums over the parts, in order (Python's ``sum``, 0 + x₁ + x₂ + …: a
    summation order of its own would change results in their last bits); samples and modes stack
    along the last dimension; the metric is block diagonal."""

    def __init__(self, parts: list[Part], nvec: tuple[int, ...]) -> None:
        self.parts, self.nvec = parts, nvec

    def log_prob(self, actions: Tensor) -> Tensor:
        return _total(c.log_prob(actions[..., d]) for d, c in enumerate(self.parts))

    def entropy(self) -> Tensor:
        return _total(c.entropy() for c in self.parts)

    def mode(self) -> Tensor:
        return torch.stack([c.mode() for c in self.parts], dim=-1)

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        return torch.stack([c.sample(generator) for c in self.parts], dim=-1)

    def metric(self, tangents: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        (u,) = tangents
        blocks = u.split(self.nvec, dim=-1)
        return (torch.cat([c.metric((b,))[0] for c, b in zip(self.parts, blocks, strict=True)], dim=-1),)

    def kl_to(self, other: Blocks) -> Tensor:
        """Σ_d KL(part_d ‖ other's part_d); TypeError if the blocks differ."""
        if self.nvec != other.nvec:
            raise TypeError(f"kl(old, new): nvec {self.nvec} != {other.nvec}")
        return _total(o.kl_to(n) for o, n in zip(self.parts, other.parts, strict=True))


def _total(values: Iterable[Tensor]) -> Tensor:
    return sum(values)  # type: ignore[return-value]
