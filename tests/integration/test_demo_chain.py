"""`make demo`'s command sequence, in miniature (tiny network, one epoch): θ̂ on the embedded
paintings, objects from θ and θ̂ and from scratch, the report's Table 3, a saliency figure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
TINY = ["backbone=test_resnet", "backbone.weights=none", "trainer.max_epochs=1",
        "data.num_workers=0", "trainer.precision=32-true"]  # fmt: skip


def arttl(root: Path, command: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", f"arttl.{command}", *args],
        cwd=root, capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_the_makefile_runs_these_commands() -> None:
    recipe = (REPO / "Makefile").read_text(encoding="utf-8")
    for piece in ("+experiment=demo_paintings", "+experiment=demo_objects mode=off_the_shelf,fine_tune",
                  "+experiment=demo_objects_from_paintings mode=off_the_shelf,fine_tune",
                  "+experiment=demo_objects mode=scratch", "arttl.report", "arttl.saliency"):  # fmt: skip
        assert piece in recipe, piece


@pytest.mark.slow
def test_demo_chain_in_miniature(tmp_path: Path) -> None:
    out = tmp_path / "outputs" / "demo"
    common = [f"paths.root_dir={tmp_path}", *TINY]
    arttl(tmp_path, "train", "+experiment=demo_paintings", *common,
          f"hydra.run.dir={out}/paintings")  # fmt: skip
    theta_hat = tmp_path / "checkpoints" / "demo_paintings" / "test_resnet-fine_tune.ckpt"
    assert theta_hat.is_file()
    # "θ" here is a random init standing in for ImageNet (no download in tests): the chain is
    # what is tested, with θ̂ = the painting-tuned checkpoint
    no_weights = [a for a in common if not a.startswith("backbone.weights")]
    for experiment in ("demo_objects", "demo_objects_from_paintings"):
        weights = [] if experiment.endswith("paintings") else ["backbone.weights=none"]
        arttl(tmp_path, "train", "-m", f"+experiment={experiment}", *no_weights, *weights,
              "mode=off_the_shelf,fine_tune", f"hydra.sweep.dir={out}/{experiment}")  # fmt: skip
    arttl(tmp_path, "train", "+experiment=demo_objects", "mode=scratch", *common,
          f"hydra.run.dir={out}/objects_scratch")  # fmt: skip
    arttl(tmp_path, "report", str(out), f"out_dir={out}/report")
    table3 = pd.read_csv(out / "report" / "table3.csv")
    assert list(table3["dataset"]) == ["demo_objects"]
    assert {"off_the_shelf/arttl", "fine_tune/arttl", "scratch/none"} <= set(table3.columns)
    assert table3[["off_the_shelf/arttl", "fine_tune/arttl"]].notna().all(axis=None)
    images = ",".join(str(p) for p in sorted((REPO / "data/demo/paintings/Baroque").iterdir())[:2])
    theta = tmp_path / "checkpoints" / "demo_objects" / "test_resnet-fine_tune.ckpt"
    arttl(tmp_path, "saliency", f"images=[{images}]", f"models=[{theta},{theta_hat}]",
          "deletion_steps=2", f"out_dir={out}/saliency")  # fmt: skip
    assert (out / "saliency" / "saliency_visual_backprop.png").stat().st_size > 10_000
