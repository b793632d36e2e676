"""What a config builds: the update rule with its curvature back end, and the networks."""

from __future__ import annotations

import logging

import gymnasium as gym
import torch
from torch import nn

from trustpg.config.train_config import TrainConfig
from trustpg.core.curvature import DiagonalDirection, Direction, EmpiricalDirection, NaturalDirection
from trustpg.core.kfac import KFACDirection, KFACPreconditionedCG
from trustpg.core.rules import NPG, TRPO, VPG
from trustpg.core.update import UpdateRule
from trustpg.io.memory import check_memory
from trustpg.nets.cnn import image_layout, make_cnn
from trustpg.nets.policies import Critic, action_kind, make_actor, obs_dim
from trustpg.nets.recurrent import make_recurrent
from trustpg.sampling.rollout import obs_handling

log = logging.getLogger("trustpg")
_DEFAULT_HIDDEN = TrainConfig.__dataclass_fields__["hidden_sizes"].default
_told: set[tuple[int, ...]] = set()  # hidden_sizes already said to be unused by a CNN


def make_rule(c: TrainConfig) -> UpdateRule:
    """The update rule a config asks for."""
    direction = make_direction(c)
    if c.algo == "trpo":
        return TRPO(c.max_kl, direction, c.backtrack_ratio, c.max_backtracks, c.kl)
    if c.algo == "npg":
        if c.npg_step_size is None:
            return NPG(max_kl=c.max_kl, direction=direction)
        return NPG(step_size=c.npg_step_size, max_kl=None, direction=direction)
    return VPG(c.vpg_lr, c.vpg_optimizer)


def make_direction(c: TrainConfig) -> Direction:
    """The curvature back end a config asks for (``curvature``)."""
    k, angle = c.fvp_stride, c.ng_angle_states
    if c.curvature != "cg" and angle == 0 and c.algo != "vpg":
        log.info(
            "angle to the exact natural gradient not measured (ng_angle column empty): "
            "--ng-angle-states 1024 measures it per update, at about the cost of a 50-iteration CG"
        )
    if c.curvature == "kfac":
        return KFACDirection(c.damping, c.kfac_decay, k, angle, seed=c.seed)
    if c.curvature == "kfac-cg":
        kfac = KFACDirection(c.damping, c.kfac_decay, k, angle, seed=c.seed)
        return KFACPreconditionedCG(kfac, c.pcg_iters, c.cg_tol, c.fvp_method)
    if c.curvature == "diagonal":
        return DiagonalDirection(c.damping, k, angle)
    if c.curvature == "empirical":
        return EmpiricalDirection(c.damping, c.cg_iters, c.cg_tol, k, angle)
    # The generic analytic FVP for every policy (a hand-written one for the default MLP bought
    # ~2 % end to end on Hopper and was deleted, DESIGN §5 and docs/performance.md).
    return NaturalDirection(c.damping, c.cg_iters, c.cg_tol, c.fvp_method, k)


def networks(
    c: TrainConfig, obs_space: gym.Space, act_space: gym.Space, actor: nn.Module | None
) -> tuple[nn.Module, nn.Module]:
    """Actor (``actor`` if given) and critic for ``c.policy``: MLPs, or GRU/LSTM cells of
    ``hidden_sizes[0]`` units under MLP heads of the remaining sizes (:mod:`trustpg.nets.recurrent`)."""
    kind = c.policy
    if kind == "auto":
        kind = "cnn" if image_layout(obs_space) is not None else "mlp"
    if kind == "cnn":
        if c.curvature != "cg":
            raise ValueError(
                f"curvature={c.curvature!r} is invalid: must be cg for image observations (a CNN "
                "policy): kfac, kfac-cg, diagonal and empirical are written for Linear layers"
            )
        if c.hidden_sizes != _DEFAULT_HIDDEN and c.hidden_sizes not in _told:
            _told.add(c.hidden_sizes)
            log.warning("hidden_sizes=%s is not used by the CNN: --cnn-dense-sizes sizes its dense "
                        "layers (unset: the paper's one layer)", list(c.hidden_sizes))  # fmt: skip
        normalized = obs_handling(obs_space, c.normalize_obs, c.policy, c.normalize_images)[0]
        cnn_actor, cnn_critic = make_cnn(
            obs_space, act_space, c.log_std_init, c.action_dist, normalized, c.cnn_dense_sizes
        )
        return (actor if actor is not None else cnn_actor), cnn_critic
    if kind == "mlp":
        made = actor if actor is not None else make_actor(
            obs_space, act_space, c.hidden_sizes, c.activation, c.log_std_init, c.action_dist
        )  # fmt: skip
        return made, Critic(obs_dim(obs_space), c.critic_hidden_sizes, c.activation)
    h, vh = c.hidden_sizes, c.critic_hidden_sizes
    assert kind in ("gru", "lstm")
    rnn_actor, critic = make_recurrent(
        obs_space, act_space, kind, h[0], h[1:], vh[1:], c.activation, c.log_std_init,
        c.action_dist,
    )  # fmt: skip
    if vh[0] != h[0]:  # the critic's own cell size
        critic = make_recurrent(obs_space, act_space, kind, vh[0], h[1:], vh[1:], c.activation,
                                c.log_std_init, c.action_dist)[1]  # fmt: skip
    return (actor if actor is not None else rnn_actor), critic


def check_memory_for(
    c: TrainConfig, obs_space: gym.Space, act_space: gym.Space, actor: nn.Module | None
) -> None:
    """ValueError naming the fields if the networks and batch of ``c`` cannot fit in memory: MLPs
    counted from their sizes; a CNN, a recurrent or a user's network counted as built on the
    ``meta`` device (shapes only, nothing allocated), a CNN's activations by one forward there."""
    d, act_dim = obs_dim(obs_space), action_kind(act_space)[1]
    kind = c.policy if c.policy != "auto" else ("cnn" if image_layout(obs_space) else "mlp")
    if actor is None and kind == "mlp":
        check_memory(c, d, act_dim)
        return
    with torch.device("meta"):
        made, critic = networks(c, obs_space, act_space, actor)
    layout = image_layout(obs_space) if kind == "cnn" else None
    compact = obs_handling(obs_space, c.normalize_obs, c.policy, c.normalize_images)[1]
    check_memory(
        c, d, act_dim, actor_params=_count(made), critic_params=_count(critic),
        activations=None if actor is not None or layout is None else _activations(made, d),
        compact_obs=compact, frames=None if layout is None else tuple(obs_space.shape or ()),
    )  # fmt: skip


def _count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def _activations(net: nn.Module, obs_dim: int) -> int:
    """Values one sample leaves in ``net``'s layers (the outputs of its leaf modules), measured
    by a forward pass of a ``meta`` tensor (no computation, no memory)."""
    sizes: list[int] = []
    leaves = [m for m in net.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(lambda _m, _i, out: sizes.append(out.numel())) for m in leaves]
    try:
        net(torch.zeros(1, obs_dim, device="meta"))
    finally:
        for h in hooks:
            h.remove()
    return sum(sizes)
