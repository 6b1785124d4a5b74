"""The HDF5 split store: self-describing files, written atomically, read lazily per worker."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from PIL import Image
from torch.utils.data import Dataset

SPLITS = ("train", "val", "test")
STORE_FORMAT = 1


def split_file(store_dir: str | Path, split: str) -> Path:
    return Path(store_dir) / f"{split}.h5"


def write_split(
    path: str | Path,
    images: Iterable[bytes],
    labels: np.ndarray,
    paths: list[str],
    class_names: list[str],
    attrs: dict[str, Any],
) -> None:
    """Write one split to ``path`` (the caller renames it into place when the whole store is done)."""
    labels = np.asarray(labels, dtype=np.int64)
    str_dt = h5py.string_dtype("utf-8")
    with h5py.File(path, "w") as f:
        img_ds = f.create_dataset(
            "images",
            shape=(len(labels),),
            dtype=h5py.vlen_dtype(np.uint8),
            chunks=(max(1, min(64, len(labels))),),
            track_times=False,  # same input -> byte-identical file
        )
        for i, data in enumerate(images):
            img_ds[i] = np.frombuffer(data, dtype=np.uint8)
        f.create_dataset("labels", data=labels, track_times=False)
        f.create_dataset(
            "paths", data=np.array(paths, dtype=object), dtype=str_dt, track_times=False
        )
        f.create_dataset(
            "class_names",
            data=np.array(class_names, dtype=object),
            dtype=str_dt,
            track_times=False,
        )
        for key, value in attrs.items():
            f.attrs[key] = value
        f.attrs["store_format"] = STORE_FORMAT
        f.attrs["count"] = len(labels)
        f.attrs["complete"] = True  # last write: a file without it was interrupted


def read_attrs(path: str | Path) -> dict[str, Any]:
    with h5py.File(path, "r") as f:
        return {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}


def is_complete(path: str | Path) -> bool:
    try:
        return bool(read_attrs(path).get("complete", False))
    except OSError:
        return False


def read_class_names(path: str | Path) -> list[str]:
    with h5py.File(path, "r") as f:
        return [s.decode() if isinstance(s, bytes) else str(s) for s in f["class_names"][()]]


class H5ImageDataset(Dataset):
    """Images of one split; the file is opened on first access, so every DataLoader worker has its own."""

    def __init__(self, path: str | Path, transform: Callable | None = None) -> None:
        self.path = Path(path)
        self.transform = transform
        self._file: h5py.File | None = None
        with h5py.File(self.path, "r") as f:
            self.labels = f["labels"][()]
            self.class_names = [
                s.decode() if isinstance(s, bytes) else str(s) for s in f["class_names"][()]
            ]

    def __len__(self) -> int:
        return len(self.labels)

    def _images(self) -> h5py.Dataset:
        if self._file is None:
            self._file = h5py.File(self.path, "r")
        return self._file["images"]

    def paths(self) -> list[str]:
        with h5py.File(self.path, "r") as f:
            return [p.decode() if isinstance(p, bytes) else str(p) for p in f["paths"][()]]

    def raw(self, index: int) -> bytes:
        return self._images()[index].tobytes()

    def image(self, index: int) -> Image.Image:
        return Image.open(io.BytesIO(self.raw(index))).convert("RGB")

    def __getitem__(self, index: int) -> tuple[Any, int]:
        img = self.image(index)
        if self.transform is not None:
            img = self.transform(img)
        return img, int(self.labels[index])

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"] = None  # h5py handles cannot cross process boundaries
        return state
