"""How much memory a run will need, estimated before anything large is allocated (issue 18).

A config such as ``hidden_sizes=(100000, 100000)`` or ``steps_per_env=10**9`` (from the command
line, a config file or a crafted checkpoint) would otherwise allocate until the OS kills the
process, possibly after minutes of work. :func:`check_memory` compares a rough estimate with the
memory this process can still get and refuses, in one line naming the fields, if it cannot fit.

The estimate is deliberately a lower bound of what training needs (a run refused here could not
have finished); it counts float32 values only:

- networks: every parameter of the actor ``ACTOR_COPIES`` times (θ, gradient, the conjugate
  gradient vectors, the step, the line search's θ) and of the critic ``CRITIC_COPIES`` times
  (parameters, gradient, Adam's two moments, the fitting process's copy), plus ``LAYER_BYTES``
  of Python objects per layer;
- batch: per transition the observation as collected (up to float64) and normalised (float32),
  each in a list and stacked, ``BATCH_SCALARS`` per-step scalars (rewards, flags, values, GAE
  terms), and the policy update's activations (pre- and post-activation of each hidden layer,
  kept for the backward pass over the whole batch).

For a CNN or recurrent policy, or a user's actor, the caller counts the parameters and per-sample
activations of the networks themselves (built on PyTorch's ``meta`` device, which allocates
nothing: :func:`trustpg.train.build.check_memory_for`) and passes them in; frames kept as
``uint8`` count ``COMPACT_OBS_BYTES`` per entry instead of ``OBS_BYTES``.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

FLOAT32 = 4
ACTOR_COPIES = 8
CRITIC_COPIES = 5
#: Python objects of one layer (``nn.Linear`` and its activation), whatever its width.
LAYER_BYTES = 8192
#: Bytes per transition for rewards, termination flags, values, next values, advantages, returns.
BATCH_SCALARS = 64
#: Bytes per observation dimension and transition: float64 raw + float32 normalised, list and stack.
OBS_BYTES = 2 * (8 + FLOAT32)
#: Bytes per entry of a frame kept as uint8 (the CNN's observations): list and stack.
COMPACT_OBS_BYTES = 2


def mlp_params(sizes: Sequence[int]) -> int:
    """Weights and biases of an MLP with layer widths ``sizes`` (input first, output last)."""
    return sum(a * b + b for a, b in itertools.pairwise(sizes))


def estimate_model_bytes(
    obs_dim: int, act_dim: int, hidden_sizes: Sequence[int], critic_hidden_sizes: Sequence[int],
    actor_params: int | None = None, critic_params: int | None = None,
) -> int:  # fmt: skip
    """Bytes the actor and critic need while training (see the module docstring);
    ``actor_params`` and ``critic_params`` replace the MLPs' parameter counts (for a CNN, a
    recurrent or a user's network)."""
    if actor_params is None:
        actor_params = mlp_params([obs_dim, *hidden_sizes, act_dim]) + act_dim  # + a Gaussian's log σ
    critic = mlp_params([obs_dim, *critic_hidden_sizes, 1]) if critic_params is None else critic_params
    layers = len(hidden_sizes) + len(critic_hidden_sizes) + 2
    return FLOAT32 * (ACTOR_COPIES * actor_params + CRITIC_COPIES * critic) + LAYER_BYTES * layers


def estimate_batch_bytes(
    num_envs: int, steps_per_env: int, obs_dim: int, act_dim: int, hidden_sizes: Sequence[int],
    obs_bytes: int = OBS_BYTES, activations: int | None = None,
) -> int:  # fmt: skip
    """Bytes one batch of ``num_envs × steps_per_env`` transitions needs during an update;
    ``activations`` (values one sample leaves for the backward pass) replaces the MLP's count."""
    if activations is None:
        activations = 2 * (sum(hidden_sizes) + act_dim)
    per_step = obs_bytes * obs_dim + BATCH_SCALARS + FLOAT32 * activations
    return num_envs * steps_per_env * per_step


def available_memory() -> int | None:
    """Bytes this process can still allocate: ``MemAvailable`` of /proc/meminfo (or free physical
    pages elsewhere), lowered to the room left under a cgroup v2 limit; None if unknown."""
    avail = _meminfo_available()
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            avail = None
    room = _cgroup_room()
    if room is not None:
        avail = room if avail is None else min(avail, room)
    return avail


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_room() -> int | None:
    """Memory left under this process's cgroup v2 ``memory.max``, if one is set."""
    try:
        base = Path("/sys/fs/cgroup")
        limit = (base / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int((base / "memory.current").read_text()))
    except (OSError, ValueError):
        return None


def gib(n: float) -> str:
    """``n`` bytes for a message: 48.4 TB, 1.5 GB, 300 MB, 12 kB (binary units)."""
    if n >= 1 << 80:  # beyond any machine (and beyond what a float can divide, for huge ints)
        return "over a billion TB"
    for unit, size in (("TB", 1 << 40), ("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} bytes"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_memory(
    config: Any, obs_dim: int, act_dim: int, *, actor_params: int | None = None,
    critic_params: int | None = None, activations: int | None = None, compact_obs: bool = False,
    frames: tuple[int, ...] | None = None, available: int | None = None,
) -> None:  # fmt: skip
    """ValueError (one line naming the fields) if ``config``'s networks and batch cannot fit in
    the memory available. ``config`` needs ``hidden_sizes``, ``critic_hidden_sizes``, ``num_envs``
    and ``steps_per_env``; ``actor_params``, ``critic_params`` and ``activations`` replace the MLPs'
    counts (see :func:`estimate_batch_bytes`), ``compact_obs`` says the frames stay uint8, and
    ``frames`` (the image shape) says the networks' size follows the frames, not ``hidden_sizes``."""
    hidden, critic_hidden = tuple(config.hidden_sizes), tuple(config.critic_hidden_sizes)
    model = estimate_model_bytes(obs_dim, act_dim, hidden, critic_hidden, actor_params, critic_params)
    batch_hidden = hidden if actor_params is None else critic_hidden  # a custom actor's: unknown
    obs_bytes = COMPACT_OBS_BYTES if compact_obs else OBS_BYTES
    batch = estimate_batch_bytes(
        config.num_envs, config.steps_per_env, obs_dim, act_dim, batch_hidden, obs_bytes, activations
    )  # fmt: skip
    avail = available_memory() if available is None else available
    if avail is None or model + batch <= avail:
        return
    if model >= batch and frames is not None:
        fields = f"observation frames of shape {frames}"
        what = f"CNN networks of about {gib(model)}"
        fix = "downscale the frames (e.g. gymnasium's ResizeObservation wrapper)"
    elif model >= batch:
        fields = f"hidden_sizes={_short(hidden)}" + (
            f", vf_hidden_sizes={_short(critic_hidden)}" if critic_hidden != hidden else ""
        )
        what = f"networks of about {gib(model)}"
        fix = "choose smaller hidden_sizes / vf_hidden_sizes"
    else:
        fields = f"num_envs={_short(config.num_envs)} × steps_per_env={_short(config.steps_per_env)}"
        what = f"batches of about {gib(batch)}"
        fix = "choose a smaller num_envs or steps_per_env" + (
            "" if frames is None else f", or downscale the frames of shape {frames}"
        )
    raise ValueError(
        f"{fields} needs {what} ({gib(model + batch)} in all, a lower bound) but only "
        f"{gib(avail)} of memory is available (obs_dim={obs_dim}, act_dim={act_dim}); {fix}"
    )
