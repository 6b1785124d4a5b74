"""Shared test set-up. Tests never reach the internet: the Hugging Face hub and datasets run
offline for the whole session (the download test starts its own local hub server and sets its
own environment for the processes it runs)."""

from __future__ import annotations

import os

# At import, before any test imports huggingface_hub / datasets (they read these once).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
