"""Training: the trainer (one update), critic fitting, the Agent API and callbacks."""
