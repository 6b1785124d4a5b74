"""One training run: config validation, resume and checkpoints, DDP, fit/test, results."""
