"""What the trainer needs of a sampler: :class:`Sampler`, and all it asks.

Two implementations: the in-process :class:`~trustpg.sampling.rollout.Collector` and the Ray
:class:`~trustpg.sampling.distributed.RayCollector`. The trainer never looks at which one it has.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from torch import nn

from trustpg.sampling.rollout import Batch


class Sampler(Protocol):
    """Collects batches of env steps with the current actor and critic."""

    #: Rollout workers restarted so far after they died (0 for a sampler without workers).
    restarts: int
    #: Seconds of the last ``collect`` by phase, for benchmarks (e.g. the Ray sampler's
    #: ``broadcast``, ``sampling``, ``transfer``, ``merge``); empty if the sampler measures none.
    timings: dict[str, float]

    def collect(
        self, actor: nn.Module, critic: nn.Module, steps: int,
        critic_ready: Callable[[], None] | None = None,
    ) -> Batch:  # fmt: skip
        """``steps`` steps of every env. ``critic_ready()`` waits for a critic fit that may still be
        running; the sampler calls it before it first uses ``critic`` (after stepping the envs
        in-process, so that the fit overlaps the collection; before sending it to remote workers)."""
        ...

    def state_dict(self) -> dict[str, Any] | None:
        """JSON state to continue collecting exactly from here, or None if it cannot be captured
        (the episodes are then restarted on resume)."""
        ...

    def close(self) -> None: ...
