"""DDP on 2 CPU processes (gloo) under a Hydra multirun: same metrics as 1 process, one results.json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from arttl.training.run import run_training
from tests.fixtures.raw_datasets import make_imagefolder
from tests.fixtures.training import FAST, compose_train

REPO = Path(__file__).resolve().parents[2]

# Off-the-shelf head, full-batch (feature_batch_size >= 32 train images): each of the 2 ranks
# gets 16 images and DDP averages their gradients, which is the 1-process full-batch gradient,
# so the two runs must agree up to float rounding.
SAME_PROBLEM = [
    "dataset=imagefolder",
    "mode=off_the_shelf",
    "backbone.weights=none",
    "mode.optimizer.lr=0.05",
    "trainer.max_epochs=3",
    "data.feature_batch_size=64",
]


@pytest.mark.slow
def test_ddp_two_cpu_processes_match_one_process_and_write_one_result(tmp_path):
    ds = make_imagefolder(tmp_path / "raw", n_per_class=10, classes=("a", "b", "c", "d"))
    root = [f"dataset.root={ds.root}", f"paths.root_dir={tmp_path}"]
    cfg = compose_train(tmp_path, *SAME_PROBLEM, *root, f"run_dir={tmp_path}/single")
    single = run_training(cfg, cfg.run_dir)
    assert single["samples"]["train"] == 32

    sweep = tmp_path / "sweep"
    cmd = [
        sys.executable,
        "-m",
        "arttl.train",
        "-m",
        *FAST,
        *SAME_PROBLEM,
        *root,
        "trainer=ddp",
        "trainer.devices=2",
        "trainer.accelerator=cpu",
        "seed=42,43",  # two jobs: the second must not reuse the first one's process group
        f"hydra.sweep.dir={sweep}",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=500, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-4000:]
    results = sorted(sweep.rglob("results.json"))
    assert [p.parent.name for p in results] == [
        "test_resnet-off_the_shelf-0",
        "test_resnet-off_the_shelf-1",
    ]
    assert not (tmp_path / "outputs").exists()  # rank 1 joined the job folder, made none of its own
    assert sorted(p.name for p in (sweep / "test_resnet-off_the_shelf-0").glob("*.log")) == [
        "train.log",
        "train_ddp_process_1.log",
    ]
    ddp = json.loads(results[0].read_text())
    assert ddp["seed"] == 42 and ddp["best_epoch"] == single["best_epoch"]
    for split in ("val", "test"):
        for key, value in single[split].items():
            expected = None if value is None else pytest.approx(value, abs=1e-4)
            assert ddp[split][key] == expected, (split, key)
