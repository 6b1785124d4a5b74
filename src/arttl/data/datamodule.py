"""LightningDataModules: images from the HDF5 store, or cached features for off-the-shelf heads."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from arttl.data.store import (
    SPLITS,
    H5ImageDataset,
    incomplete_splits,
    read_attrs,
    read_task_classes,
    split_file,
    task_columns,
)
from arttl.data.tasks import challenge_name
from arttl.data.transforms import GpuDecode, build_transform, collate_encoded
from arttl.errors import ConfigError

if TYPE_CHECKING:
    from arttl.models.classifier import ArtClassifier


def check_store(
    store_dir: str | Path, challenge: str | Sequence[str] | None = None
) -> dict[str, Any]:
    """Refuse a missing, interrupted or other-challenge store with the command that fixes it."""
    store_dir = Path(store_dir)
    missing = incomplete_splits(store_dir)
    if missing:
        raise ConfigError(
            f"store.dir={str(store_dir)!r} has no complete {missing[0]}.h5; build it with "
            "`python -m arttl.prepare dataset=<name> dataset.root=<dir>` (train does this "
            "itself when the store is missing)."
        )
    attrs = read_attrs(split_file(store_dir, "train"))
    name = None if challenge is None else challenge_name(challenge)
    if name is not None and attrs.get("challenge") != name:
        challenge = name
        raise ConfigError(
            f"store.dir={str(store_dir)!r} was prepared for challenge {attrs.get('challenge')!r}, "
            f"not dataset.challenge={challenge!r}; prepare it with dataset.challenge={challenge}."
        )
    return attrs


def _loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    num_workers: int,
    collate_fn: Callable | None = None,
) -> DataLoader:
    """Pinned memory (async host-to-GPU copies) and workers kept alive across epochs."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=num_workers > 0,
        collate_fn=collate_fn,
    )


def check_gpu_decode(gpu_decode: bool) -> None:
    """nvJPEG decoding needs CUDA (also a config rule: refused before the store is prepared)."""
    if gpu_decode and not torch.cuda.is_available():
        raise ConfigError(
            "data.gpu_decode=true decodes JPEGs with nvJPEG and needs CUDA, which is not "
            "available here; use data.gpu_decode=false."
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
        gpu_decode: bool = False,
        tasks: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.tasks = tasks  # a multi-task model's tasks: the store's label columns it learns
        check_gpu_decode(gpu_decode)
        self.store_dir = Path(store_dir)
        self.data_config = data_config
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.gpu_decode = gpu_decode
        self.augment = augment
        scale = tuple(float(x) for x in scale)  # a ListConfig from instantiate
        self.train_tf = build_transform(
            data_config, training=augment, scale=scale, hflip=hflip, color_jitter=color_jitter
        )
        self.eval_tf = build_transform(data_config, training=False)
        self.gpu_tf = GpuDecode(data_config, scale=scale, hflip=hflip) if gpu_decode else None
        self.datasets: dict[str, H5ImageDataset] = {}

    @classmethod
    def from_model(
        cls,
        model: ArtClassifier,
        store_dir: str | Path,
        digest: str | None = None,
        **options: Any,
    ) -> StoreDataModule:
        """The ``mode.datamodule`` of the image modes (``${data.images}``): the model (its data
        config sets the transforms) and the store exist only at run time; ``options`` are the
        constructor's keywords (``data.*``). ``digest`` keys the feature cache: unused here, as
        every mode's datamodule gets the same arguments."""
        return cls(store_dir, model.data_config, tasks=model.task_names, **options)

    def setup(self, stage: str | None = None) -> None:
        for split in SPLITS:
            if split not in self.datasets:
                tf = self.train_tf if split == "train" else self.eval_tf
                path = split_file(self.store_dir, split)
                if self.gpu_decode:  # workers only read bytes; decoding happens on the GPU
                    self.datasets[split] = H5ImageDataset(path, encoded=True, tasks=self.tasks)
                else:
                    self.datasets[split] = H5ImageDataset(path, tf, tasks=self.tasks)

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """With gpu_decode, turn the list of JPEG byte tensors into a uint8 batch on the GPU."""
        if self.gpu_tf is None:
            return batch
        encoded, labels = batch
        trainer = self.trainer
        device = trainer.strategy.root_device if trainer is not None else torch.device("cuda")
        training = bool(trainer is not None and trainer.training and self.augment)
        return self.gpu_tf(encoded, training, device), labels

    @property
    def class_names(self) -> list[str]:
        self.setup()
        return self.datasets["train"].class_names

    def _split_loader(self, split: str, shuffle: bool) -> DataLoader:
        self.setup()
        collate = collate_encoded if self.gpu_decode else None
        return _loader(self.datasets[split], self.batch_size, shuffle, self.num_workers, collate)

    def train_dataloader(self) -> DataLoader:
        return self._split_loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._split_loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._split_loader("test", False)


class _FeatureSet(TensorDataset):
    """Whole batches by one tensor index: no Python call and collate per sample (``__getitems__``)."""

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, ...]:
        index = torch.as_tensor(indices)
        return tuple(t[index] for t in self.tensors)


def _as_batch(batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return batch  # __getitems__ already returns the collated batch


def task_features(
    features: dict[str, tuple[torch.Tensor, torch.Tensor]],
    store_dir: str | Path,
    tasks: list[str] | None,
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Cached features with the label columns of ``tasks`` (in that order) of a multi-task
    store; as they are for a one-task store (``tasks`` None)."""
    available = read_task_classes(split_file(store_dir, "train"))
    if available is None and tasks is None:
        return features
    if tasks is None:
        raise ConfigError(
            f"store.dir={str(store_dir)!r} is a multi-task store ({', '.join(available or {})}); "
            "build the model with its tasks (tasks=[...]) to train on its cached features."
        )
    columns = torch.tensor(task_columns(available, list(tasks), f"store.dir={str(store_dir)!r}"))
    return {split: (x, y[:, columns]) for split, (x, y) in features.items()}


class FeatureDataModule(L.LightningDataModule):
    """Cached backbone features per split: the off-the-shelf head trains without the backbone."""

    def __init__(
        self, features: dict[str, tuple[torch.Tensor, torch.Tensor]], batch_size: int
    ) -> None:
        super().__init__()
        self.sets = {s: _FeatureSet(x, y) for s, (x, y) in features.items()}
        self.batch_size = batch_size

    @classmethod
    def from_model(
        cls,
        model: ArtClassifier,
        store_dir: str | Path,
        cache_dir: str | Path,
        batch_size: int = 32,
        feature_batch_size: int | None = None,
        num_workers: int = 0,
        digest: str | None = None,
    ) -> FeatureDataModule:
        """The ``mode.datamodule`` of off_the_shelf (conf/mode/off_the_shelf.yaml): the frozen
        backbone's features from the cache, extracting the missing splits once (in batches of at
        least 64: no gradients, so memory allows). The head trains on ``feature_batch_size``
        (null: ``batch_size``). The cache holds every task column of a multi-task store; the
        model's tasks (``model.task_names``) select theirs, by name."""
        from arttl.data.features import cached_features  # pulls in the model code: only here

        features, _ = cached_features(
            model,
            store_dir,
            cache_dir,
            batch_size=max(64, int(batch_size)),
            num_workers=int(num_workers),
            digest=digest,
        )
        return cls(
            task_features(features, store_dir, model.task_names),
            int(feature_batch_size or batch_size),
        )

    def train_dataloader(self) -> DataLoader:
        return _loader(self.sets["train"], self.batch_size, True, 0, _as_batch)

    def val_dataloader(self) -> DataLoader:
        return _loader(self.sets["val"], self.batch_size, False, 0, _as_batch)

    def test_dataloader(self) -> DataLoader:
        return _loader(self.sets["test"], self.batch_size, False, 0, _as_batch)
