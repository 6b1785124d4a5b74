"""Cluster sweeps through submitit (run locally) and an Optuna search over lr and batch size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.fixtures.raw_datasets import make_imagefolder
from tests.fixtures.training import FAST

REPO = Path(__file__).resolve().parents[2]


def _train(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    ds = make_imagefolder(tmp_path / "raw", n_per_class=6)
    cmd = [
        sys.executable,
        "-m",
        "arttl.train",
        "-m",  # (hparams_search sets hydra.mode=MULTIRUN itself)
        *(o for o in FAST if not o.startswith("data.batch_size")),  # Optuna searches it
        "dataset=imagefolder",
        f"dataset.root={ds.root}",
        f"paths.root_dir={tmp_path}",
        f"hydra.sweep.dir={tmp_path}/sweep",
        *overrides,
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=500, cwd=tmp_path, env=env)


@pytest.mark.slow
def test_submitit_local_runs_a_two_job_sweep(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    done = _train(tmp_path, "hydra/launcher=local", "trainer.fast_dev_run=true", "seed=1,2")
    assert done.returncode == 0, done.stderr[-4000:]
    results = sorted((tmp_path / "sweep").rglob("results.json"))
    assert [json.loads(p.read_text())["seed"] for p in results] == [1, 2]
    assert list(
        (tmp_path / "sweep" / ".submitit").iterdir()
    )  # the jobs really went through submitit


@pytest.mark.slow
def test_optuna_search_over_lr_and_batch_size(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    done = _train(
        tmp_path,
        "+experiment=demo",
        "hparams_search=demo_lr_batch",
        "hydra.sweeper.n_trials=2",
        "backbone=test_resnet",
        "store.shorter_side=null",
        "trainer.max_epochs=1",
    )
    assert done.returncode == 0, done.stderr[-4000:]
    best = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    assert set(best["best_params"]) == {"mode.optimizer.lr", "data.batch_size"}
    trials = [
        json.loads(p.read_text()) for p in sorted((tmp_path / "sweep").glob("trial-*/results.json"))
    ]
    assert len(trials) == 2
    assert best["best_value"] == pytest.approx(min(t["val"]["loss"] for t in trials))
