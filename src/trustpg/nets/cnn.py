"""Convolutional actor and critic for image observations (``policy="cnn"``, or ``"auto"`` on a
3-D ``Box``): the Nature-CNN trunk (Mnih et al. 2015: 32 8×8/4, 64 4×4/2, 64 3×3/1, 512 units) for
frames of at least 36×36 pixels, and for smaller ones the MinAtar network (Young & Tian 2019: 16
3×3/1 filters, 128 units), whose frames (10×10) a stride-4 8×8 filter would not fit.

A frame arrives as the rollout stores it, ``uint8`` (or flattened, as the critic's values are
computed), and is scaled here by 1/high (1/255 for pixels; MinAtar's 0/1 channels unscaled), or
arrives normalised per cell, float32, with ``normalize_images`` (:func:`make_cnn`).
Channels are first when the first axis is the smallest (``(4, 84, 84)`` from a frame stack), else
last (``(10, 10, C)``, the Gymnasium image convention); a 2-D frame has one channel.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from trustpg.core.distributions import Distribution
from trustpg.nets.policies import (
    HIDDEN_GAIN,
    POLICY_HEAD_GAIN,
    VALUE_HEAD_GAIN,
    ActionKind,
    BoxDist,
    head_distribution,
    head_of,
)

#: Frames at least this wide and high get the Nature-CNN (its receptive field and strides need it).
NATURE_MIN_SIZE = 36


def image_layout(space: gym.Space) -> tuple[tuple[int, int, int], bool] | None:
    """``((C, H, W), channels_last)`` of an image observation space, or None if it is not one
    (a ``Box`` of 2 or 3 dimensions with frames of at least 4×4)."""
    if not isinstance(space, gym.spaces.Box) or len(space.shape) not in (2, 3):
        return None
    shape = tuple(int(n) for n in space.shape)
    if len(shape) == 2:
        chw, last = (1, shape[0], shape[1]), True
    elif shape[0] < shape[1] and shape[0] < shape[2]:
        chw, last = (shape[0], shape[1], shape[2]), False
    else:
        chw, last = (shape[2], shape[0], shape[1]), True
    return (chw, last) if min(chw[1:]) >= 4 else None


def pixel_scale(space: gym.spaces.Box) -> float:
    """1/high for frames with a finite high above 1 (1/255 for uint8 pixels), else 1."""
    high = float(np.max(space.high))
    return 1.0 / high if np.isfinite(high) and high > 1.0 else 1.0


def _init(layer: nn.Conv2d | nn.Linear, gain: float) -> nn.Module:
    nn.init.orthogonal_(layer.weight, gain=gain)
    assert layer.bias is not None  # every layer here has one
    nn.init.zeros_(layer.bias)
    return layer


class ConvTrunk(nn.Module):
    """Frames ``[B, ...]`` (any dtype, any layout of the ``C·H·W`` entries) to features ``[B, F]``:
    the convolutions, then ReLU dense layers of ``dense`` units (None: the paper's one layer)."""

    def __init__(
        self, chw: tuple[int, int, int], channels_last: bool, scale: float,
        dense: tuple[int, ...] | None = None,
    ) -> None:  # fmt: skip
        super().__init__()
        self.chw, self.channels_last, self.scale = chw, channels_last, scale
        c, h, w = chw
        if min(h, w) >= NATURE_MIN_SIZE:
            convs = [nn.Conv2d(c, 32, 8, 4), nn.Conv2d(32, 64, 4, 2), nn.Conv2d(64, 64, 3, 1)]
            sizes = dense or (512,)
        else:
            convs = [nn.Conv2d(c, 16, 3, 1)]
            sizes = dense or (128,)
        layers: list[nn.Module] = []
        for conv in convs:
            layers += [_init(conv, HIDDEN_GAIN), nn.ReLU()]
        self.conv = nn.Sequential(*layers, nn.Flatten())
        with torch.no_grad():
            width = int(self.conv(torch.zeros(1, c, h, w)).shape[1])
        fc: list[nn.Module] = []
        for size in sizes:
            fc += [_init(nn.Linear(width, size), HIDDEN_GAIN), nn.ReLU()]
            width = size
        self.fc, self.features = nn.Sequential(*fc), width

    def head_dtype(self) -> torch.dtype:
        return next(self.fc.parameters()).dtype

    def forward(self, obs: Tensor) -> Tensor:
        c, h, w = self.chw
        dtype = self.head_dtype()  # float32, or float64 in the float64 tests
        x = obs.reshape(obs.shape[0], *((h, w, c) if self.channels_last else (c, h, w))).to(dtype)
        if self.channels_last:
            x = x.permute(0, 3, 1, 2)
        return self.fc(self.conv(x * self.scale))


class CNNActor(nn.Module):
    """π_θ(a|frame): the conv trunk and a linear head producing what the MLP actor's last layer
    produces (logits, a Gaussian mean, Beta concentrations), so every action family works."""

    def __init__(
        self, space: gym.spaces.Box, action_dim: int, kind: ActionKind, log_std_init: float = 0.0,
        nvec: tuple[int, ...] = (), scale: float | None = None, dense: tuple[int, ...] | None = None,
    ) -> None:  # fmt: skip
        super().__init__()
        layout = image_layout(space)
        if layout is None:
            raise ValueError(f"a CNN policy needs image observations (a 2-D or 3-D Box), got {space}")
        if kind == "beta":
            raise ValueError("action_dist='beta' is for the MLP and recurrent policies, not the CNN")
        self.kind, self.nvec, self.action_dim = kind, tuple(nvec), action_dim
        self.trunk = ConvTrunk(*layout, pixel_scale(space) if scale is None else scale, dense)
        self.head = _init(nn.Linear(self.trunk.features, action_dim), POLICY_HEAD_GAIN)
        if kind == "gaussian":
            self.log_std = nn.Parameter(torch.full((action_dim,), float(log_std_init)))

    def forward(self, obs: Tensor) -> Distribution:
        return head_distribution(self, self.head(self.trunk(obs)), obs)


class CNNCritic(nn.Module):
    """V_φ(frame), shape ``[B]``: its own conv trunk (actor and critic share nothing, as in TRPO)."""

    def __init__(
        self, space: gym.spaces.Box, scale: float | None = None, dense: tuple[int, ...] | None = None
    ) -> None:
        super().__init__()
        layout = image_layout(space)
        if layout is None:
            raise ValueError(f"a CNN critic needs image observations (a 2-D or 3-D Box), got {space}")
        self.trunk = ConvTrunk(*layout, pixel_scale(space) if scale is None else scale, dense)
        self.head = _init(nn.Linear(self.trunk.features, 1), VALUE_HEAD_GAIN)

    def forward(self, obs: Tensor) -> Tensor:
        return self.head(self.trunk(obs)).squeeze(-1)


def make_cnn(
    observation_space: gym.Space,
    action_space: gym.Space,
    log_std_init: float,
    action_dist: BoxDist,
    normalized: bool = False,
    dense: tuple[int, ...] | None = None,
) -> tuple[CNNActor, CNNCritic]:
    """The CNN actor and critic for these spaces, with dense layers of ``dense`` units (None: the
    paper's); frames arrive ``normalized`` per cell (then unscaled) or raw (scaled by
    :func:`pixel_scale`)."""
    if not isinstance(observation_space, gym.spaces.Box):
        raise ValueError(f"a CNN policy needs image observations (a 2-D or 3-D Box), got {observation_space}")
    h = head_of(observation_space, action_space, action_dist)
    scale = 1.0 if normalized else None
    actor = CNNActor(observation_space, h.dim, h.kind, log_std_init, h.nvec, scale, dense)
    return actor, CNNCritic(observation_space, scale, dense)
