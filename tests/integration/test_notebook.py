"""notebooks/saliency_comparison.ipynb runs end to end on two tiny checkpoints, offline."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient

from tests.fixtures.training import tiny_checkpoint

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "saliency_comparison.ipynb"
CLASSES = ["etching", "painting", "drawing"]


def test_notebook_is_stored_with_its_figures() -> None:
    """Committed with the outputs of a run on `make demo`'s networks, so the forge shows them."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    assert len([o for o in outputs if "image/png" in o.get("data", {})]) == 2
    assert "parameters" in nb.cells[1].metadata.get("tags", [])


def test_kernel_is_this_venv() -> None:
    """`python3` resolves to this interpreter's kernelspec, whose `python` argv jupyter_client
    replaces with sys.executable, so the notebook sees the same arttl as the tests."""
    spec = KernelSpecManager().get_kernel_spec("python3")
    assert spec.argv[0] in ("python", "python3", sys.executable)


def test_notebook_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On its default images (embedded paintings) with two tiny checkpoints instead of the demo's."""
    a = tiny_checkpoint(tmp_path / "theta.ckpt", CLASSES, seed=0)
    b = tiny_checkpoint(tmp_path / "theta_hat.ckpt", CLASSES, seed=1)
    out = tmp_path / "out"
    # The kernel inherits this environment; the notebook's first cell reads these.
    monkeypatch.setenv("ARTTL_NB_MODELS", f"{a},{b}")
    monkeypatch.setenv("ARTTL_NB_BACKBONE", "")  # both models are checkpoints
    monkeypatch.setenv("ARTTL_NB_DELETION_STEPS", "4")
    monkeypatch.setenv("ARTTL_NB_OUT_DIR", str(out))
    monkeypatch.setenv("ARTTL_NB_DEVICE", "cpu")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        nb,
        kernel_name="python3",
        timeout=120,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    ).execute()

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    pngs = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(pngs) == 2  # overlay and raw grids
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    assert "spearman" in html and "1011.jpg" in html

    csv = pd.read_csv(out / "agreement_visual_backprop.csv")
    assert len(csv) == 3 and csv.spearman.between(-1, 1).all()
    maps = np.load(out / "saliency_visual_backprop.npz")
    assert maps["maps"].shape == (3, 2, 64, 64)
