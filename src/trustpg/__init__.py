"""trustpg: vanilla, natural and trust-region policy gradients with checked math.

The names below are imported on first use (PEP 562), so ``import trustpg`` and the command
line's first lines run before torch is loaded (a Ctrl-C there is handled, ``--help`` is quick).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trustpg.config.train_config import TrainConfig
    from trustpg.train.agent import NPG, TRPO, VPG, Agent

__all__ = ["NPG", "TRPO", "VPG", "Agent", "TrainConfig"]
__version__ = "0.1.0"

_WHERE = {"NPG": "trustpg.train.agent", "TRPO": "trustpg.train.agent", "VPG": "trustpg.train.agent",
          "Agent": "trustpg.train.agent", "TrainConfig": "trustpg.config.train_config"}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'trustpg' has no attribute {name!r}")
