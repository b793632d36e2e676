"""trustpg: vanilla, natural and trust-region policy gradients with checked math."""

from trustpg.agent import NPG, TRPO, VPG, Agent
from trustpg.config import TrainConfig

__all__ = ["NPG", "TRPO", "VPG", "Agent", "TrainConfig"]
__version__ = "0.1.0"
