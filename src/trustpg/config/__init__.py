"""TrainConfig (:mod:`~trustpg.config.train_config`) and the presets (data only)."""
