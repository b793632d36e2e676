"""Files: checkpoints, metrics logs, plots, the progress bar, run directories, memory checks."""
