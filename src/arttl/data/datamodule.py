"""LightningDataModules: images from the HDF5 store, or cached features for off-the-shelf heads."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from arttl.data.store import SPLITS, H5ImageDataset, is_complete, read_attrs, split_file
from arttl.data.transforms import build_transform
from arttl.errors import ConfigError


def check_store(store_dir: str | Path, challenge: str | None = None) -> dict[str, Any]:
    """Refuse a missing, interrupted or other-challenge store with the command that fixes it."""
    store_dir = Path(store_dir)
    for split in SPLITS:
        f = split_file(store_dir, split)
        if not f.is_file() or not is_complete(f):
            raise ConfigError(
                f"store.dir={str(store_dir)!r} has no complete {split}.h5; build it with "
                "`python -m arttl.prepare dataset=<name> dataset.root=<dir>` (train does this "
                "itself when the store is missing)."
            )
    attrs = read_attrs(split_file(store_dir, "train"))
    if challenge is not None and attrs.get("challenge") != challenge:
        raise ConfigError(
            f"store.dir={str(store_dir)!r} was prepared for challenge {attrs.get('challenge')!r}, "
            f"not dataset.challenge={challenge!r}; prepare it with dataset.challenge={challenge}."
        )
    return attrs


def _loader(dataset: Dataset, batch_size: int, shuffle: bool, num_workers: int) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=num_workers > 0,
    )


class StoreDataModule(L.LightningDataModule):
    """Images of one store; transforms come from the backbone's timm data config."""

    def __init__(
        self,
        store_dir: str | Path,
        data_config: dict[str, Any],
        batch_size: int = 32,
        num_workers: int = 2,
        scale: Sequence[float] = (0.5, 1.0),
        hflip: float = 0.5,
        color_jitter: float | None = None,
        augment: bool = True,
    ) -> None:
        super().__init__()
        self.store_dir = Path(store_dir)
        self.data_config = data_config
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.train_tf = build_transform(
            data_config, training=augment, scale=scale, hflip=hflip, color_jitter=color_jitter
        )
        self.eval_tf = build_transform(data_config, training=False)
        self.datasets: dict[str, H5ImageDataset] = {}

    def setup(self, stage: str | None = None) -> None:
        for split in SPLITS:
            if split not in self.datasets:
                tf = self.train_tf if split == "train" else self.eval_tf
                self.datasets[split] = H5ImageDataset(split_file(self.store_dir, split), tf)

    @property
    def class_names(self) -> list[str]:
        self.setup()
        return self.datasets["train"].class_names

    def train_dataloader(self) -> DataLoader:
        return _loader(self.datasets["train"], self.batch_size, True, self.num_workers)

    def val_dataloader(self) -> DataLoader:
        return _loader(self.datasets["val"], self.batch_size, False, self.num_workers)

    def test_dataloader(self) -> DataLoader:
        return _loader(self.datasets["test"], self.batch_size, False, self.num_workers)


class FeatureDataModule(L.LightningDataModule):
    """Cached backbone features per split: the off-the-shelf head trains without the backbone."""

    def __init__(
        self, features: dict[str, tuple[torch.Tensor, torch.Tensor]], batch_size: int
    ) -> None:
        super().__init__()
        self.sets = {s: TensorDataset(x, y) for s, (x, y) in features.items()}
        self.batch_size = batch_size

    def train_dataloader(self) -> DataLoader:
        return _loader(self.sets["train"], self.batch_size, True, 0)

    def val_dataloader(self) -> DataLoader:
        return _loader(self.sets["val"], self.batch_size, False, 0)

    def test_dataloader(self) -> DataLoader:
        return _loader(self.sets["test"], self.batch_size, False, 0)
