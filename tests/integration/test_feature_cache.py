"""The off-the-shelf feature cache trains the same head as running the frozen backbone each step."""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from arttl.data.build import StoreSettings, prepare_dataset
from arttl.data.datamodule import FeatureDataModule
from arttl.data.features import cached_features
from arttl.data.store import H5ImageDataset, split_file
from arttl.models.classifier import ArtClassifier
from tests.fixtures.raw_datasets import READERS, make_imagefolder
from tests.fixtures.training import quiet_trainer

BATCH = 8


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("features")
    ds = make_imagefolder(tmp / "raw", n_per_class=10, classes=("a", "b", "c"))
    reader = functools.partial(READERS[ds.source], **ds.options)
    settings = StoreSettings(shorter_side=None, seed=0)
    prepare_dataset(ds.source, ds.challenge, ds.root, reader, tmp / "store", settings, 1)
    return tmp / "store"


def _model() -> ArtClassifier:
    L.seed_everything(0)
    return ArtClassifier(
        "test_resnet",
        num_classes=3,
        mode="off_the_shelf",
        weights="none",
        image_size=32,
        optimizer=functools.partial(torch.optim.SGD, lr=0.5),
    )


def _fit(model: ArtClassifier, train: DataLoader) -> None:
    L.seed_everything(1)  # the same shuffling for both runs
    quiet_trainer(max_epochs=2, limit_val_batches=0).fit(model, train_dataloaders=train)


def test_cached_features_train_the_same_head_as_the_frozen_backbone(store, tmp_path):
    base = _model()
    features, hits = cached_features(base, store, tmp_path / "cache", batch_size=16)
    assert not any(hits.values())
    # Through the backbone: the same eval-transformed images, in the same order, same batches.
    data = H5ImageDataset(split_file(store, "train"), base.eval_transform())
    images = torch.stack([data[i][0] for i in range(len(data))])
    labels = torch.as_tensor(data.labels)
    assert torch.equal(labels, features["train"][1])
    through = copy.deepcopy(base)
    _fit(through, DataLoader(TensorDataset(images, labels), batch_size=BATCH, shuffle=True))
    cached = copy.deepcopy(base)
    _fit(cached, FeatureDataModule(features, BATCH).train_dataloader())
    assert not torch.allclose(cached.head.weight, base.head.weight)  # the head did train
    torch.testing.assert_close(cached.head.weight, through.head.weight, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(cached.head.bias, through.head.bias, rtol=1e-4, atol=1e-5)
    for name, tensor in base.backbone.state_dict().items():
        assert torch.equal(tensor, cached.backbone.state_dict()[name]), name


def test_second_call_reads_every_split_from_the_cache(store, tmp_path):
    model = _model()
    first, _ = cached_features(model, store, tmp_path / "cache", batch_size=16)
    again, hits = cached_features(model, store, tmp_path / "cache", batch_size=64)
    assert all(hits.values())
    for split, (x, y) in first.items():
        assert torch.equal(x, again[split][0]) and torch.equal(y, again[split][1])
