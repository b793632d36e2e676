"""Action masking: categorical distributions that give invalid actions probability zero.

An environment that forbids some actions in some states (a board game's occupied squares, a
scheduler's busy machines) provides a boolean mask per state, True for a valid action. The
masked policy is the policy's categorical renormalised on the valid support
(Huang and Ontañón 2022, "A closer look at invalid action masking in policy gradient
algorithms", FLAIRS): with logits z and valid set V,

    p_k = exp(z_k) / Σ_{j∈V} exp(z_j) for k ∈ V,   p_k = 0 otherwise.

Invalid logits are replaced by the most negative finite number of the dtype before the softmax,
so their probabilities are exactly 0 and their log-probabilities finite (no NaN from 0·(−∞) in
entropy, KL or gradients); entropy and KL sum over V only. The metric in the logits is the
Categorical one, diag(p) − ppᵀ, whose rows and columns of invalid actions are zero: the Fisher of
a masked policy is that of the categorical on V. A state with no valid action at all (an env bug)
is treated as unmasked rather than producing NaN. Both distributions of a KL carry the same mask
(they are evaluated on the same states).
"""

from __future__ import annotations

import torch
from torch import Tensor

from trustpg.core.blocks import Blocks, check_nvec
from trustpg.core.distributions import Categorical, Distribution, Params, _family_error


def masked_logits(logits: Tensor, mask: Tensor) -> Tensor:
    """z with invalid entries (``mask`` False) set to the dtype's most negative finite value;
    rows with no valid entry are left as they are (all actions valid)."""
    valid = mask.to(torch.bool)
    valid = valid | ~valid.any(-1, keepdim=True)
    return logits.masked_fill(~valid, torch.finfo(logits.dtype).min)


class MaskedCategorical:
    """One of K actions restricted to the valid ones: logits ``[B, K]``, boolean ``mask``
    ``[B, K]`` (True = valid), actions integer ``[B]``. Parameters φ = (logits,) as for
    :class:`Categorical`, which it wraps around the masked logits; the mask is fixed data,
    carried over by ``with_params``."""

    def __init__(self, logits: Tensor, mask: Tensor) -> None:
        if mask.shape != logits.shape:
            raise ValueError(f"mask of shape {tuple(mask.shape)} for logits of shape {tuple(logits.shape)}")
        self.mask = mask.to(torch.bool)
        self.valid = self.mask | ~self.mask.any(-1, keepdim=True)  # no valid action: all are
        self.logits = logits
        self.inner = Categorical(logits=masked_logits(logits, self.mask))
        self.probs, self.log_probs = self.inner.probs, self.inner.log_probs

    @property
    def params(self) -> Params:
        return (self.logits,)

    def with_params(self, params: Params) -> MaskedCategorical:
        (z,) = params
        return MaskedCategorical(z, self.mask)

    def log_prob(self, actions: Tensor) -> Tensor:
        return self.inner.log_prob(actions)

    def entropy(self) -> Tensor:
        """−Σ_{k∈V} p_k log p_k."""
        return -torch.where(self.valid, self.probs * self.log_probs, 0.0).sum(-1)

    def mode(self) -> Tensor:
        return self.inner.mode()

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        return self.inner.sample(generator)

    def metric(self, tangents: Params) -> Params:
        """(diag(p) − ppᵀ) u, zero in the invalid coordinates (p_k = 0 there)."""
        return self.inner.metric(tangents)

    def kl_to(self, other: Distribution) -> Tensor:
        """Σ_{k∈V} p_k (log p_k − log q_k) (both on the same states, so with the same mask)."""
        if not isinstance(other, MaskedCategorical):
            raise _family_error(self, other)
        return torch.where(self.valid, self.probs * (self.log_probs - other.log_probs), 0.0).sum(-1)


class MaskedMultiCategorical:
    """Independent masked categoricals over D dimensions with n_1..n_D choices (``MultiDiscrete``):
    logits and ``mask`` ``[B, Σ n_d]`` (the D blocks concatenated, True = valid), actions integer
    ``[B, D]``. log p, entropy and KL are sums over d; the metric is block diagonal (all in
    :class:`~trustpg.core.blocks.Blocks`, as for :class:`MultiCategorical`: with every action
    valid, the two give the same bits)."""

    def __init__(self, logits: Tensor, nvec: tuple[int, ...] | list[int], mask: Tensor) -> None:
        self.nvec = check_nvec(logits, nvec)
        self.logits, self.mask = logits, mask.to(torch.bool)
        blocks = zip(logits.split(self.nvec, dim=-1), self.mask.split(self.nvec, dim=-1), strict=True)
        self.blocks = Blocks([MaskedCategorical(z, m) for z, m in blocks], self.nvec)
        self.parts = self.blocks.parts

    @property
    def params(self) -> Params:
        return (self.logits,)

    def with_params(self, params: Params) -> MaskedMultiCategorical:
        (z,) = params
        return MaskedMultiCategorical(z, self.nvec, self.mask)

    def log_prob(self, actions: Tensor) -> Tensor:
        return self.blocks.log_prob(actions)

    def entropy(self) -> Tensor:
        return self.blocks.entropy()

    def mode(self) -> Tensor:
        return self.blocks.mode()

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        return self.blocks.sample(generator)

    def metric(self, tangents: Params) -> Params:
        return self.blocks.metric(tangents)

    def kl_to(self, other: Distribution) -> Tensor:
        if not isinstance(other, MaskedMultiCategorical):
            raise _family_error(self, other)
        return self.blocks.kl_to(other.blocks)
