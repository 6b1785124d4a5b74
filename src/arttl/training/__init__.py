"""One training run: precision, provenance, resume and checkpoints, DDP, fit/test, results."""
