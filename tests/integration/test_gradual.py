"""Gradual unfreezing: the backbone stays fixed until mode.unfreeze_at_epoch, then trains."""

from __future__ import annotations

import lightning as L
import torch

from arttl.models.classifier import ArtClassifier
from arttl.training.run import build_model, run_training
from tests.fixtures.raw_datasets import make_imagefolder
from tests.fixtures.training import compose_train


def _changed(tmp_path, unfreeze_at: int) -> tuple[bool, bool]:
    ds = make_imagefolder(tmp_path / "raw", n_per_class=8)
    cfg = compose_train(
        tmp_path,
        "dataset=imagefolder",
        f"dataset.root={ds.root}",
        "mode=gradual",
        f"mode.unfreeze_at_epoch={unfreeze_at}",
        "mode.optimizer.lr=0.05",
        "trainer.max_epochs=2",
        "callbacks.early_stopping=null",
        "callbacks.checkpoint.monitor=null",
        "callbacks.checkpoint.filename=final",
        f"run_dir={tmp_path}/run{unfreeze_at}",
    )
    L.seed_everything(cfg.seed)
    before = build_model(cfg, ds.classes, "x")
    record = run_training(cfg, cfg.run_dir)
    after = ArtClassifier.from_checkpoint(record["checkpoint"])
    backbone = any(
        not torch.equal(p, after.backbone.state_dict()[n])
        for n, p in before.backbone.named_parameters()
    )
    head = not torch.equal(before.head.weight, after.head.weight)
    return backbone, head


def test_backbone_frozen_before_the_unfreeze_epoch(tmp_path):
    assert _changed(tmp_path, unfreeze_at=5) == (False, True)


def test_backbone_trains_after_the_unfreeze_epoch(tmp_path):
    assert _changed(tmp_path, unfreeze_at=1) == (True, True)
