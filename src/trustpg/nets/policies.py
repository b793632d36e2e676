"""MLP actor (observation → action distribution) and critic (observation → V(s)).

A custom policy is any ``nn.Module`` whose ``forward(obs)`` returns a
:class:`trustpg.core.distributions.Distribution` (docs/usage.md, "Custom policies"); these are the
defaults, built from the environment's spaces by :func:`make_actor`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from trustpg.core.beta import Beta
from trustpg.core.distributions import Bernoulli, Categorical, DiagGaussian, Distribution, MultiCategorical
from trustpg.core.masked import MaskedCategorical, MaskedMultiCategorical

ActionKind = Literal["categorical", "multicategorical", "bernoulli", "gaussian", "beta"]
#: The families a Box action space can be given (TrainConfig.action_dist).
BoxDist = Literal["gaussian", "beta"]
ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}
#: Orthogonal-init gains (Saxe et al. 2014): √2 for hidden layers; a small policy head keeps the
#: initial policy near uniform/zero-mean (Andrychowicz et al. 2021, "What matters in on-policy RL").
HIDDEN_GAIN = math.sqrt(2.0)
POLICY_HEAD_GAIN = 0.01
VALUE_HEAD_GAIN = 1.0


def mlp(sizes: list[int], activation: str, head_gain: float) -> nn.Sequential:
    """Linear layers of the given sizes with ``activation`` between them, orthogonally initialised."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layer = nn.Linear(sizes[i], sizes[i + 1])
        last = i == len(sizes) - 2
        nn.init.orthogonal_(layer.weight, gain=head_gain if last else HIDDEN_GAIN)
        nn.init.zeros_(layer.bias)
        layers.append(layer)
        if not last:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


HeadKind = Literal["categorical", "multicategorical", "bernoulli", "gaussian", "beta", "value"]


@dataclass(frozen=True, eq=False)
class MLPSpec:
    """A module's declaration that it computes a plain MLP, the capability fast paths attach by
    (DESIGN §5): ``out = L_n ∘ σ ∘ … ∘ σ ∘ L_1 (obs)`` with ``L_i(h) = h W_iᵀ + b_i`` and, on top,

    * ``"gaussian"``: DiagGaussian(mean=out, log_std); ``"categorical"``/``"bernoulli"``: logits;
      ``"multicategorical"``: logits split by ``nvec``; ``"beta"``: Beta(out[:, :A], out[:, A:]) on
      the action box (:class:`~trustpg.core.beta.Beta`); ``"value"``: V = out[..., 0].

    ``linears`` are the module's live layers (read their weights when the path runs). With
    ``mask_dim`` > 0 the last ``mask_dim`` observation entries mask the logits (> 0.5: valid)."""

    linears: tuple[nn.Linear, ...]
    activation: str  # a key of ACTIVATIONS
    alpha: float  # ELU's α (1.0 for the others)
    head: HeadKind
    nvec: tuple[int, ...] = ()
    log_std: nn.Parameter | None = None
    mask_dim: int = 0
    bounds: tuple[Tensor, Tensor] | None = None  # the "beta" head's action box (low, high)

    def layers(self) -> list[tuple[Tensor, Tensor]]:
        """``[(W [out, in], b [out]), …]``, the live parameters."""
        return [(m.weight, m.bias) for m in self.linears]

    def parameters(self) -> list[Tensor]:
        """All parameters the MLP uses, in the module's ``parameters()`` order (log σ first)."""
        own = [] if self.log_std is None else [self.log_std]
        return own + [p for w_b in self.layers() for p in w_b]


def mlp_form(module: nn.Module, head: HeadKind, stock_forward: object) -> MLPSpec | str:
    """``module.net`` as an :class:`MLPSpec`, or why it is not one (for the fallback messages)."""
    name = type(module).__name__
    if getattr(type(module), "forward", None) is not stock_forward:
        return f"{name} overrides forward"
    net = getattr(module, "net", None)
    if type(net) is not nn.Sequential:
        return f"{name}.net is not an nn.Sequential"
    layers, kinds = list(net), {cls: key for key, cls in ACTIVATIONS.items()}
    for m in layers:
        if type(m) is not nn.Linear and type(m) not in kinds:
            return f"{name} has a {type(m).__name__}"
    linears, acts = layers[0::2], layers[1::2]
    if not all(type(m) is nn.Linear for m in linears) or any(type(m) is nn.Linear for m in acts):
        return f"{name}.net does not alternate Linear layers and activations"
    if not linears or len(linears) != len(acts) + 1 or any(m.bias is None for m in linears):
        return f"{name}.net does not end in a Linear layer with bias" if linears else f"{name}.net is empty"
    if len({type(m) for m in acts}) > 1:
        return f"{name} mixes activations"
    if any(m._forward_hooks or m._forward_pre_hooks for m in module.modules()):
        return f"{name} has forward hooks"
    act = kinds[type(acts[0])] if acts else "tanh"
    alpha = float(getattr(acts[0], "alpha", 1.0)) if acts else 1.0
    log_std = getattr(module, "log_std", None) if head == "gaussian" else None
    linear = tuple(m for m in linears if isinstance(m, nn.Linear))  # all of them (checked above)
    nvec, masked = tuple(getattr(module, "nvec", ())), int(getattr(module, "mask_dim", 0))
    low, high = getattr(module, "low", None), getattr(module, "high", None)
    bounds = None
    if head == "beta" and isinstance(low, Tensor) and isinstance(high, Tensor):
        bounds = (low, high)
    spec = MLPSpec(linear, act, alpha, head, nvec, log_std, masked, bounds)
    used = [id(p) for p in spec.parameters()]
    if len(set(used)) != len(used) or [id(p) for p in module.parameters()] != used:
        return f"{name} has parameters besides its Linear layers' (or shares one)"
    return spec


def mlp_spec_of(module: nn.Module) -> tuple[MLPSpec | None, str]:
    """``module.mlp_spec()`` and, when it is None, why (the reason fast paths log when they stay off)."""
    get = getattr(module, "mlp_spec", None)
    spec = get() if callable(get) else None
    if isinstance(spec, MLPSpec):
        return spec, ""
    if not callable(get):
        return None, f"{type(module).__name__} declares no mlp_spec()"
    why = getattr(module, "mlp_spec_reason", None)
    return None, why() if callable(why) else f"{type(module).__name__}.mlp_spec() is None"


def head_distribution(head: Any, out: Tensor, obs: Tensor) -> Distribution:
    """The distribution an actor's last layer ``out`` stands for, as ``head`` declares it
    (``kind``, ``nvec``, ``action_dim``, ``mask_dim``, ``log_std``, ``low``/``high``): shared by the
    MLP actor and the recurrent one (:mod:`trustpg.nets.recurrent`). ``obs`` carries the action
    mask in its last ``mask_dim`` entries (> 0.5: valid), if the head has one."""
    kind, mask_dim = head.kind, int(getattr(head, "mask_dim", 0))
    if mask_dim:
        mask = obs[..., -mask_dim:] > 0.5
        if kind == "categorical":
            return MaskedCategorical(out, mask)
        return MaskedMultiCategorical(out, head.nvec, mask)
    if kind == "categorical":
        return Categorical(logits=out)
    if kind == "multicategorical":
        return MultiCategorical(out, head.nvec)
    if kind == "bernoulli":
        return Bernoulli(logits=out)
    if kind == "beta":
        a = int(head.action_dim)
        return Beta(out[..., :a], out[..., a:], head.low, head.high)
    return DiagGaussian(out, head.log_std)


class Actor(nn.Module):
    """π_θ(a|s): an MLP producing logits (categorical, multicategorical, bernoulli), a mean
    (gaussian) or the two Beta concentrations' pre-activations (beta, ``2·action_dim`` outputs).

    The Gaussian log-std is a state-independent parameter, as in Schulman et al. 2015. The Beta
    policy (Chou et al. 2017) samples inside the box ``[low, high]`` itself (its distribution maps
    [0, 1] onto it, log-probabilities included), so clipping to the box never changes its actions;
    ``low``/``high`` are non-persistent buffers (not in the state dict: they come from the env).

    With ``mask_dim`` > 0 (categorical and multicategorical only) the last ``mask_dim`` entries of
    each observation are an action mask (``trustpg.envs.masking``; > 0.5 = valid): the actor
    returns a :class:`~trustpg.core.masked.MaskedCategorical` (or MaskedMultiCategorical), and the
    mask entries are inputs of the MLP like the other observation entries.
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        kind: ActionKind,
        hidden: tuple[int, ...] = (64, 64),
        activation: str = "tanh",
        log_std_init: float = 0.0,
        nvec: tuple[int, ...] = (),
        low: np.ndarray | None = None,
        high: np.ndarray | None = None,
        mask_dim: int = 0,
    ) -> None:
        super().__init__()
        if mask_dim and (kind not in ("categorical", "multicategorical") or mask_dim != action_dim):
            raise ValueError(
                f"an action mask of {mask_dim} entries does not fit {kind} actions of size {action_dim} "
                "(masks are for Discrete(n): n entries, and MultiDiscrete(nvec): sum(nvec) entries)"
            )
        if mask_dim > obs_dim:
            raise ValueError(f"mask_dim={mask_dim} is larger than the observation ({obs_dim} entries)")
        self.mask_dim = int(mask_dim)
        self.kind = kind
        self.nvec = tuple(nvec)  # choices per dimension, for "multicategorical"
        self.action_dim = action_dim
        out = 2 * action_dim if kind == "beta" else action_dim
        self.net = mlp([obs_dim, *hidden, out], activation, POLICY_HEAD_GAIN)
        if kind == "gaussian":
            self.log_std = nn.Parameter(torch.full((action_dim,), float(log_std_init)))
        self.low: Tensor
        self.high: Tensor  # the Beta policy's action box (buffers)
        if kind == "beta":
            lo, hi = finite_bounds(low, high, action_dim)
            self.register_buffer("low", torch.as_tensor(lo, dtype=torch.float32), persistent=False)
            self.register_buffer("high", torch.as_tensor(hi, dtype=torch.float32), persistent=False)

    def forward(self, obs: Tensor) -> Distribution:
        return head_distribution(self, self.net(obs), obs)

    def mlp_spec(self) -> MLPSpec | None:
        """This actor as a plain MLP, or None when it is not one (a layer added, forward overridden)."""
        spec = mlp_form(self, self.kind, Actor.forward)
        return spec if isinstance(spec, MLPSpec) else None

    def mlp_spec_reason(self) -> str:
        spec = mlp_form(self, self.kind, Actor.forward)
        return "" if isinstance(spec, MLPSpec) else spec


class Critic(nn.Module):
    """V_φ(s), shape ``[B]``."""

    def __init__(self, obs_dim: int, hidden: tuple[int, ...] = (64, 64), activation: str = "tanh") -> None:
        super().__init__()
        self.net = mlp([obs_dim, *hidden, 1], activation, VALUE_HEAD_GAIN)

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(obs).squeeze(-1)

    def mlp_spec(self) -> MLPSpec | None:
        """This critic as a plain MLP with one output unit, or None when it is not one."""
        spec = mlp_form(self, "value", Critic.forward)
        return spec if isinstance(spec, MLPSpec) and spec.linears[-1].out_features == 1 else None

    def mlp_spec_reason(self) -> str:
        spec = mlp_form(self, "value", Critic.forward)
        if isinstance(spec, str):
            return spec
        return "" if spec.linears[-1].out_features == 1 else f"{type(self).__name__} has more than one output"


SUPPORTED_ACTIONS = "Discrete, MultiDiscrete, MultiBinary and Box"


def action_kind(space: gym.Space) -> tuple[ActionKind, int]:
    """The distribution family and action dimension for an action space."""
    if isinstance(space, gym.spaces.Discrete):
        return "categorical", int(space.n)
    if isinstance(space, gym.spaces.MultiDiscrete):
        if space.nvec.ndim != 1 or np.any(space.start != 0):
            raise ValueError(f"MultiDiscrete actions must be 1-D and start at 0, got {space}")
        return "multicategorical", int(space.nvec.sum())
    if isinstance(space, gym.spaces.MultiBinary):
        return "bernoulli", int(np.prod(space.shape))
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
        if not np.issubdtype(space.dtype, np.floating):
            raise ValueError(f"Box action space must be float, got dtype {space.dtype}")
        return "gaussian", int(space.shape[0])
    raise ValueError(f"unsupported action space {space}; trustpg supports {SUPPORTED_ACTIONS} (1-D) actions")


def obs_dim(space: gym.Space) -> int:
    """Size of a flat observation; Box of any shape is flattened."""
    if isinstance(space, gym.spaces.Box):
        return int(np.prod(space.shape))
    if isinstance(space, gym.spaces.Discrete):
        raise ValueError(
            f"unsupported observation space {space}; trustpg needs Box observations "
            "(wrap discrete observations with gymnasium.wrappers.OneHot or similar)"
        )
    raise ValueError(f"unsupported observation space {space}; trustpg needs Box observations")


def make_actor(
    observation_space: gym.Space,
    action_space: gym.Space,
    hidden: tuple[int, ...],
    activation: str,
    log_std_init: float,
    action_dist: BoxDist = "gaussian",
) -> Actor:
    """The default actor for these spaces; ``action_dist`` picks the family of Box actions
    (``"beta"`` needs a Box with finite bounds; other spaces accept only ``"gaussian"``, the default)."""
    h = head_of(observation_space, action_space, action_dist)
    return Actor(
        obs_dim(observation_space), h.dim, h.kind, hidden, activation, log_std_init, h.nvec, h.low, h.high,
        h.mask_dim,
    )  # fmt: skip


@dataclass(frozen=True)
class Head:
    """What an actor's output layer stands for, from the spaces (every network type builds on it)."""

    kind: ActionKind
    dim: int
    nvec: tuple[int, ...] = ()
    low: np.ndarray | None = None
    high: np.ndarray | None = None
    #: Trailing observation entries that are an action mask (envs.masking.MaskedObsBox), 0: none.
    mask_dim: int = 0


def head_of(observation_space: gym.Space, action_space: gym.Space, action_dist: BoxDist = "gaussian") -> Head:
    """The action family, its size, ``nvec`` (MultiDiscrete), the Beta box and the mask size."""
    kind, dim = action_kind(action_space)
    nvec: tuple[int, ...] = ()
    if isinstance(action_space, gym.spaces.MultiDiscrete):  # kind "multicategorical"
        nvec = tuple(int(n) for n in action_space.nvec)
    low = high = None
    if action_dist == "beta":
        if not isinstance(action_space, gym.spaces.Box):
            raise ValueError(f"action_dist='beta' needs Box actions with finite bounds, got {action_space}")
        kind, low, high = "beta", action_space.low, action_space.high
    elif action_dist != "gaussian":
        raise ValueError(f"action_dist must be 'gaussian' or 'beta', got {action_dist!r}")
    return Head(kind, dim, nvec, low, high, int(getattr(observation_space, "mask_dim", 0)))


def finite_bounds(low: np.ndarray | None, high: np.ndarray | None, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """``low``, ``high`` as float arrays of length ``dim``; ValueError unless finite with low < high."""
    if low is None or high is None:
        raise ValueError("a Beta actor needs the action bounds low and high")
    lo = np.broadcast_to(np.asarray(low, np.float64), (dim,)).copy()
    hi = np.broadcast_to(np.asarray(high, np.float64), (dim,)).copy()
    if not (np.isfinite(lo).all() and np.isfinite(hi).all() and (lo < hi).all()):
        raise ValueError(
            f"the Beta policy maps [0, 1] onto the action box, which must be bounded with low < high; "
            f"got low={lo}, high={hi} (use action_dist='gaussian' for unbounded actions)"
        )
    return lo, hi
