"""Resume: SIGKILL in epoch 2 of 4 then resume = an uninterrupted run; multirun re-launch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from arttl.training.checkpointing import plan_resume
from arttl.training.run import run_training
from tests.fixtures.raw_datasets import make_imagefolder
from tests.fixtures.training import FAST, compose_train

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


@pytest.fixture
def folder(tmp_path):
    return make_imagefolder(tmp_path / "raw", n_per_class=10, classes=("a", "b", "c"))


def train_cmd(root: Path, ds, *extra: str, multirun: bool = False) -> list[str]:
    return [
        sys.executable,
        "-m",
        "arttl.train",
        *(["-m"] if multirun else []),
        *FAST,
        "dataset=imagefolder",
        f"dataset.root={ds.root}",
        f"paths.root_dir={root}",
        *extra,
    ]


def history(run_dir: Path) -> pd.DataFrame:
    """val/loss per epoch from metrics.csv (the killed run's epoch 0 row must survive resume)."""
    df = pd.read_csv(run_dir / "metrics.csv")
    return df.dropna(subset=["val/loss"]).groupby("epoch")["val/loss"].first()


def test_sigkill_in_epoch_2_of_4_then_resume_equals_uninterrupted(tmp_path, folder):
    epochs = ["trainer.max_epochs=4"]
    straight_dir = tmp_path / "straight"
    cfg = compose_train(
        tmp_path,
        "dataset=imagefolder",
        f"dataset.root={folder.root}",
        f"run_dir={straight_dir}",
        *epochs,
    )
    straight = run_training(cfg, straight_dir)  # also prepares the shared store

    run_dir = tmp_path / "killed"
    marker = tmp_path / "paused"
    pause = f"+callbacks.pause={{_target_:tests.fixtures.pause.PauseAt,epoch:1,batch:1,marker:'{marker}'}}"
    proc = subprocess.Popen(
        train_cmd(tmp_path, folder, *epochs, pause, f"hydra.run.dir={run_dir}"),
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 180
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert marker.exists(), proc.stderr.read()[-3000:] if proc.poll() is not None else "timeout"
    last = run_dir / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=False)["epoch"] == 0
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (run_dir / "results.json").exists()

    done = subprocess.run(
        train_cmd(
            tmp_path,
            folder,
            *epochs,
            "resume=true",
            "resume_allow=[callbacks.pause]",  # the test's kill hook is not part of the run
            f"hydra.run.dir={run_dir}",
        ),
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming from" in done.stdout
    resumed = json.loads((run_dir / "results.json").read_text())
    assert resumed["best_epoch"] == straight["best_epoch"]
    for split in ("val", "test"):
        for key, value in straight[split].items():
            expected = None if value is None else pytest.approx(value, rel=1e-5, abs=1e-6)
            assert resumed[split][key] == expected, (split, key)
    a, b = history(straight_dir), history(run_dir)
    assert list(b.index) == list(a.index) == [0, 1, 2, 3]
    assert b.to_numpy() == pytest.approx(a.to_numpy(), rel=1e-5)


@pytest.mark.slow
def test_multirun_relaunch_skips_finished_and_resumes_unfinished(tmp_path, folder):
    sweep = tmp_path / "sweep"
    limits = [
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        f"hydra.sweep.dir={sweep}",
        "hydra.sweep.subdir=job${hydra.job.num}",
    ]
    first = subprocess.run(
        train_cmd(tmp_path, folder, "trainer.max_epochs=1", "seed=1,2", *limits, multirun=True),
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert first.returncode == 0, first.stderr[-3000:]
    finished = (sweep / "job0" / "results.json").stat().st_mtime_ns
    (sweep / "job1" / "results.json").unlink()  # job1 "was killed" after its first epoch
    again = subprocess.run(
        train_cmd(
            tmp_path,
            folder,
            "trainer.max_epochs=2",
            "seed=1,2",
            "resume=true",
            *limits,
            multirun=True,
        ),
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"skipping {sweep / 'job0'} (finished)" in again.stdout
    assert f"resuming from {sweep / 'job1' / 'checkpoints' / 'last.ckpt'}" in again.stdout
    assert (sweep / "job0" / "results.json").stat().st_mtime_ns == finished
    record = json.loads((sweep / "job1" / "results.json").read_text())
    assert record["seed"] == 2
    assert list(history(sweep / "job1").index) == [0, 1]


def _fake_run(parent: Path, name: str, identity: dict[str, str], finished: bool = False) -> Path:
    ckpt = parent / name / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    torch.save({"epoch": 0, "hyper_parameters": identity}, ckpt)
    if finished:
        (parent / name / "results.json").write_text("{}")
    return ckpt


def test_resume_finds_the_newest_matching_earlier_run(tmp_path):
    ident = {"experiment": "demo", "backbone": "test_resnet", "mode": "fine_tune"}
    parent = tmp_path / "outputs" / "demo" / "test_resnet-fine_tune"
    older = _fake_run(parent, "2026-01-01_00-00-00", ident)
    time.sleep(0.01)
    newer = _fake_run(parent, "2026-01-02_00-00-00", ident)
    time.sleep(0.01)
    _fake_run(parent, "2026-01-03_00-00-00", {**ident, "mode": "partial"})  # not the same run
    os.utime(older, (time.time() - 100, time.time() - 100))
    plan = plan_resume(parent / "2026-01-04_00-00-00", True, None, ident)
    assert plan.ckpt_path == newer and plan.run_dir == newer.parents[1]
    # multirun jobs only look at their own folder; without resume nothing is resumed
    lone = plan_resume(parent / "x", True, None, ident, search_siblings=False)
    assert lone.ckpt_path is None
    assert plan_resume(parent / "x", False, None, ident).ckpt_path is None
    assert plan_resume(parent / "y", False, str(older), ident).ckpt_path == older


def test_resume_in_an_earlier_folder_logs_there_and_leaves_no_new_folder(tmp_path, folder):
    """resume=true continuing a sibling run: this session's log goes to that run's train.log,
    and the folder Hydra made for the new session (only .hydra/ and a log) is removed."""
    runs = tmp_path / "outputs" / "r" / "test_resnet-fine_tune"
    first = runs / "first"
    once = subprocess.run(
        train_cmd(tmp_path, folder, "name=r", "trainer.max_epochs=1", f"hydra.run.dir={first}"),
        env=ENV, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert once.returncode == 0, once.stderr[-3000:]
    (first / "results.json").unlink()  # as if it had been killed after its epoch
    again = subprocess.run(
        train_cmd(tmp_path, folder, "name=r", "trainer.max_epochs=2", "resume=true",
                  f"hydra.run.dir={runs / 'second'}"),
        env=ENV, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resuming from {first / 'checkpoints' / 'last.ckpt'}" in again.stdout
    assert sorted(p.name for p in runs.iterdir()) == ["first"]
    log = (first / "train.log").read_text(encoding="utf-8")
    assert log.count("run folder: ") == 2 and "resuming from" in log
