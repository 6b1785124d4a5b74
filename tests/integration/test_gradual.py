"""Gradual unfreezing: the backbone stays fixed until mode.unfreeze_at_epoch, then trains from
lr x mode.backbone_lr_ratio, its lr doubling each epoch up to the head's (Lightning's ramp)."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from arttl.models.classifier import ArtClassifier
from arttl.training.run import build_model, run_training
from tests.fixtures.raw_datasets import make_imagefolder
from tests.fixtures.training import compose_train

LR, RATIO = 0.05, 0.1


def _train(tmp_path, unfreeze_at: int, epochs: int = 2) -> tuple[ArtClassifier, dict]:
    """(the model as built before training, the final checkpoint loaded raw)."""
    ds = make_imagefolder(tmp_path / "raw", n_per_class=8)
    cfg = compose_train(
        tmp_path,
        "dataset=imagefolder",
        f"dataset.root={ds.root}",
        "mode=gradual",
        f"mode.unfreeze_at_epoch={unfreeze_at}",
        f"mode.backbone_lr_ratio={RATIO}",
        f"mode.optimizer.lr={LR}",
        f"trainer.max_epochs={epochs}",
        "callbacks.early_stopping=null",
        "callbacks.checkpoint.monitor=null",
        "callbacks.checkpoint.filename=final",
        f"run_dir={tmp_path}/run{unfreeze_at}",
    )
    L.seed_everything(cfg.seed)
    before = build_model(cfg, ds.classes, "x")
    record = run_training(cfg, cfg.run_dir)
    return before, torch.load(record["checkpoint"], map_location="cpu", weights_only=False)


def _changed(before: ArtClassifier, ckpt: dict) -> tuple[bool, bool]:
    state = ckpt["state_dict"]
    backbone = any(
        not torch.equal(p, state[f"backbone.{n}"]) for n, p in before.backbone.named_parameters()
    )
    return backbone, not torch.equal(before.head.weight, state["head.weight"])


def test_backbone_frozen_before_the_unfreeze_epoch(tmp_path):
    assert _changed(*_train(tmp_path, unfreeze_at=5)) == (False, True)


def test_backbone_trains_after_the_unfreeze_epoch_on_lightnings_ramp(tmp_path):
    before, ckpt = _train(tmp_path, unfreeze_at=1, epochs=3)
    assert _changed(before, ckpt) == (True, True)
    # Epoch 1: lr x ratio; epoch 2 (the last, when the checkpoint is saved): doubled.
    head, backbone = ckpt["optimizer_states"][0]["param_groups"]
    assert head["lr"] == pytest.approx(LR)
    assert backbone["lr"] == pytest.approx(LR * RATIO * 2)
