"""Crash safety: SIGKILL during prepare leaves no store that could be read; checkpoints are atomic."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import h5py
import lightning as L
import pytest
import torch
from lightning.fabric.plugins.io import torch_io
from torch.utils.data import DataLoader, TensorDataset

from arttl.data.datamodule import check_store
from arttl.data.store import SPLITS, split_file
from arttl.errors import ConfigError
from arttl.training.checkpointing import AtomicCheckpointIO, continue_in
from arttl.training.run import build_callbacks
from tests.fixtures.raw_datasets import make_imagefolder
from tests.fixtures.training import compose_train

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def prepare_cmd(tmp: Path, root: Path, store: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "arttl.prepare",
        "dataset=imagefolder",
        f"dataset.root={root}",
        f"store.dir={store}",
        "store.shorter_side=null",
        "num_workers=1",
        f"paths.root_dir={tmp}",
        f"hydra.run.dir={tmp}/run",
        *extra,
    ]


def _wait_for_reader(fifo: Path, proc: subprocess.Popen, timeout: float = 120) -> int:
    """Open the pipe for writing once prepare is blocked reading it (= midway through decoding)."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as err:
            if err.errno != errno.ENXIO:
                raise
            time.sleep(0.05)
    raise AssertionError(f"prepare never reached the pipe: {proc.stderr.read()[-2000:]}")


def test_sigkill_during_prepare_then_rerun_builds_a_complete_store(tmp_path):
    ds = make_imagefolder(tmp_path / "raw", n_per_class=8)
    fifo = tmp_path / "zzz_blocks.jpg"  # sorts after every real image: decoded last
    os.mkfifo(fifo)
    store = tmp_path / "store"
    reader = [
        "dataset.reader._target_=tests.fixtures.pause.read_with_fifo",
        f"+dataset.reader.fifo={fifo}",
    ]
    proc = subprocess.Popen(
        prepare_cmd(tmp_path, ds.root, store, *reader),
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    fd = _wait_for_reader(fifo, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    os.close(fd)
    assert not store.exists()  # the build folder is renamed into place only when complete
    with pytest.raises(ConfigError, match=r"no complete train\.h5"):
        check_store(store)

    done = subprocess.run(
        prepare_cmd(tmp_path, ds.root, store), env=ENV, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    attrs = check_store(store, "class")
    assert attrs["complete"]
    counts = json.loads(attrs["counts"])
    assert sum(counts.values()) == 3 * 8  # every raw image is in the rebuilt store
    for s in SPLITS:
        with h5py.File(split_file(store, s), "r") as f:
            assert len(f["labels"]) == counts[s] and set(f["labels"][()]) == {0, 1, 2}
    # the killed writer's half-built folder was cleaned up by the rerun
    assert not list(tmp_path.glob(".store.tmp-*"))


def test_checkpoint_save_killed_midway_keeps_the_previous_file(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"epoch": 1}, path)

    def half_written(checkpoint, filepath):
        Path(filepath).write_bytes(b"PK\x03\x04 half a zip file")
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(torch_io, "_atomic_save", half_written)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"epoch": 2}, path)
    assert torch.load(path, weights_only=True)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


class _RisingValLoss(L.LightningModule):
    """val/loss = 1 + epoch: only epoch 0 is ever the best."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self.layer(batch[0]).sum()

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.log("val/loss", 1.0 + self.current_epoch)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_last_ckpt_is_every_epoch_even_when_val_loss_rises(tmp_path):
    """conf/callbacks' last.ckpt is what resume continues from: it must hold the newest epoch,
    not the best one (Lightning's save_last=true writes it only when best.ckpt changes)."""
    cfg = compose_train(tmp_path, "callbacks.early_stopping=null")
    _fit_rising(cfg, 3)
    folder = Path(cfg.run_dir) / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["best.ckpt", "last.ckpt"]
    assert torch.load(folder / "best.ckpt", weights_only=False)["epoch"] == 0
    assert torch.load(folder / "last.ckpt", weights_only=False)["epoch"] == 2


def _fit_rising(cfg: Any, epochs: int, ckpt_path: Path | None = None) -> L.Trainer:
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=epochs,
        callbacks=build_callbacks(cfg),
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    data = DataLoader(TensorDataset(torch.ones(4, 2)), batch_size=2)
    trainer.fit(_RisingValLoss(), data, data, ckpt_path=ckpt_path)
    return trainer


def test_continuing_another_runs_checkpoint_keeps_its_best(tmp_path):
    """ckpt_path= from another run's folder: the new folder gets that run's best (epoch 0 here,
    val/loss only rises) and keeps it unless a new epoch beats it; Lightning alone would pick
    the best among the resumed epochs."""
    first = compose_train(tmp_path, "callbacks.early_stopping=null", f"run_dir={tmp_path}/a")
    _fit_rising(first, 2)
    second = compose_train(tmp_path, "callbacks.early_stopping=null", f"run_dir={tmp_path}/b")
    start = continue_in(tmp_path / "b", tmp_path / "a" / "checkpoints" / "last.ckpt")
    assert start == tmp_path / "b" / "checkpoints" / "last.ckpt"
    trainer = _fit_rising(second, 4, start)
    best = trainer.checkpoint_callback.best_model_path
    assert best == str(tmp_path / "b" / "checkpoints" / "best.ckpt")
    assert torch.load(best, weights_only=False)["epoch"] == 0
    assert float(trainer.checkpoint_callback.best_model_score) == 1.0
    assert (
        torch.load(tmp_path / "b" / "checkpoints" / "last.ckpt", weights_only=False)["epoch"] == 3
    )
    own = tmp_path / "b" / "checkpoints" / "last.ckpt"
    assert continue_in(tmp_path / "b", own) == own  # a checkpoint of this folder: as it is
