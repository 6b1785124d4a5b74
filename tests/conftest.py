"""Shared test set-up. Tests never reach the internet: the Hugging Face hub and datasets run
offline for the whole session (the download test starts its own local hub server and sets its
own environment for the processes it runs)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# At import, before any test imports huggingface_hub / datasets (they read these once).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
# The tests run tiny models, which gain nothing from several intra-op threads and lose a lot
# when the cores are busy (the threads wait on each other: a 0.1 s fit takes 3 s on two busy
# cores). One thread, here and in the processes the tests start, unless the caller says so.
os.environ.setdefault("OMP_NUM_THREADS", "1")
if "torch" in sys.modules:  # imported before this file by a plugin: too late for the variable
    sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture
def empty_hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face hub cache for this test (tests/fixtures/hf_cache.py fills one)."""
    import huggingface_hub.constants  # here, not at import: the offline switch above comes first

    cache = tmp_path / "hf"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of two small images, one broken file and a hidden one, for the saliency
    comparison (tests/fixtures/explain_inputs.py)."""
    from tests.fixtures.explain_inputs import write_art_folder

    return write_art_folder(tmp_path_factory.mktemp("images"))
