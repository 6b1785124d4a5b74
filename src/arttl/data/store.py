"""The HDF5 split store: self-describing files, written atomically, read lazily per worker."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from arttl.errors import ConfigError

SPLITS = ("train", "val", "test")
TASK_CLASSES = "task_class_names"  # group of a multi-task store: one class-name list per task
STORE_FORMAT = 1
IMAGE_FORMATS = ("jpeg", "raw")  # raw: fixed-size (N, H, W, 3) uint8, no decode when loading


def split_file(store_dir: str | Path, split: str) -> Path:
    return Path(store_dir) / f"{split}.h5"


def write_split(
    path: str | Path,
    images: Iterable[bytes],
    labels: np.ndarray,
    paths: list[str],
    class_names: list[str],
    attrs: dict[str, Any],
    raw_shape: tuple[int, int, int] | None = None,
    hashes: dict[str, list[str]] | None = None,
    task_classes: dict[str, list[str]] | None = None,
) -> None:
    """Write one split to ``path`` (the caller renames it into place when the whole store is done).

    ``images`` are JPEG bytes, or with ``raw_shape=(H, W, 3)`` the bytes of uint8 arrays of
    that shape: a raw store trades disk space for no JPEG decode in the DataLoader workers.
    ``hashes`` (e.g. ``source_hashes``, ``pixel_hashes``: one hex string per image) identify
    the images, so a checkpoint can tell later whether a store holds images it trained on.
    A multi-task store (``task_classes``: task -> class names, in column order) has one label
    column per task in ``labels`` (-1: the image has no label for that task); ``class_names``
    are then its first task's.
    """
    labels = np.asarray(labels, dtype=np.int64)
    str_dt = h5py.string_dtype("utf-8")
    with h5py.File(path, "w") as f:
        img_ds = _image_dataset(f, len(labels), raw_shape)
        for i, data in enumerate(images):
            arr = np.frombuffer(data, dtype=np.uint8)
            img_ds[i] = arr if raw_shape is None else arr.reshape(raw_shape)
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
        for task, names in (task_classes or {}).items():
            f.create_dataset(
                f"{TASK_CLASSES}/{task}", data=np.array(names, dtype=object), dtype=str_dt,
                track_times=False,
            )  # fmt: skip
        if task_classes:
            f.attrs["tasks"] = json.dumps(list(task_classes))
        for name, values in (hashes or {}).items():
            f.create_dataset(name, data=np.array(values, dtype="S16"), track_times=False)
        for key, value in attrs.items():
            f.attrs[key] = value
        f.attrs["store_format"] = STORE_FORMAT
        f.attrs["image_format"] = "jpeg" if raw_shape is None else "raw"
        f.attrs["count"] = len(labels)
        f.attrs["complete"] = True  # last write: a file without it was interrupted


def _image_dataset(f: h5py.File, n: int, raw_shape: tuple[int, int, int] | None) -> h5py.Dataset:
    """JPEG bytes (one variable-length row per image), or fixed-size raw uint8 arrays."""
    if raw_shape is None:
        return f.create_dataset(
            "images",
            shape=(n,),
            dtype=h5py.vlen_dtype(np.uint8),
            chunks=(max(1, min(64, n)),),
            track_times=False,  # same input -> byte-identical file
        )
    return f.create_dataset(
        "images",
        shape=(n, *raw_shape),
        dtype=np.uint8,
        chunks=(1, *raw_shape),  # one image per chunk: random access reads one chunk
        track_times=False,
    )


def read_attrs(path: str | Path) -> dict[str, Any]:
    with h5py.File(path, "r") as f:
        return {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}


def is_complete(path: str | Path) -> bool:
    try:
        return bool(read_attrs(path).get("complete", False))
    except OSError:  # missing or unreadable
        return False


def incomplete_splits(store_dir: str | Path) -> list[str]:
    """The splits of ``store_dir`` without a complete file (missing or interrupted); an empty
    list means the store can be used."""
    return [s for s in SPLITS if not is_complete(split_file(store_dir, s))]


def read_hashes(path: str | Path, name: str = "source_hashes") -> list[str] | None:
    """One split file's image hashes (None for stores made before arttl recorded them)."""
    with h5py.File(path, "r") as f:
        if name not in f:
            return None
        return [h.decode() for h in f[name][()]]


def _strings(values: np.ndarray) -> list[str]:
    return [s.decode() if isinstance(s, bytes) else str(s) for s in values]


def read_class_names(path: str | Path) -> list[str]:
    with h5py.File(path, "r") as f:
        return _strings(f["class_names"][()])


def read_task_classes(path: str | Path) -> dict[str, list[str]] | None:
    """A multi-task store's tasks and their class names, in label-column order (None: one task)."""
    with h5py.File(path, "r") as f:
        return _task_classes(f)


def _task_classes(f: h5py.File) -> dict[str, list[str]] | None:
    if "tasks" not in f.attrs:
        return None
    return {t: _strings(f[f"{TASK_CLASSES}/{t}"][()]) for t in json.loads(f.attrs["tasks"])}


def task_columns(available: dict[str, list[str]] | None, tasks: list[str], where: str) -> list[int]:
    """The label columns of ``tasks`` in a store with ``available`` tasks; a task it lacks is
    an error naming the ones it has."""
    names = list(available or {})
    missing = [t for t in tasks if t not in names]
    if missing:
        raise ConfigError(
            f"{where} has no task {missing[0]!r}: its tasks are {names or 'none (one-task store)'}."
            " Train on tasks the store has (tasks=[...]) or prepare it with them "
            "(dataset.challenge=[...])."
        )
    return [names.index(t) for t in tasks]


class H5ImageDataset(Dataset):
    """Images of one split; the file is opened on first access, so every DataLoader worker has its own.

    Reads JPEG and raw stores alike. ``encoded=True`` (JPEG stores only) yields the JPEG bytes
    as a 1-D uint8 tensor instead of an image, for batched decoding on the GPU. In a multi-task
    store the label is a tensor with one entry per task of ``tasks`` (default: all the store's,
    in its order), -1 where the image has none.
    """

    def __init__(
        self,
        path: str | Path,
        transform: Callable | None = None,
        encoded: bool = False,
        tasks: list[str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.transform = transform
        self.encoded = encoded
        self._file: h5py.File | None = None
        with h5py.File(self.path, "r") as f:
            self.is_raw = f["images"].ndim == 4
            if encoded and self.is_raw:
                raise ConfigError(
                    f"data.gpu_decode=true needs a JPEG store, but {str(self.path)!r} holds raw "
                    "arrays (store.format=raw); use store.format=jpeg or data.gpu_decode=false."
                )
            self.labels = f["labels"][()]
            self.class_names = _strings(f["class_names"][()])
            self.task_classes = _task_classes(f)
        if tasks is not None or self.task_classes is not None:
            chosen = list(tasks) if tasks is not None else list(self.task_classes or {})
            columns = task_columns(self.task_classes, chosen, f"store file {str(self.path)!r}")
            self.labels = self.labels[:, columns]
            self.task_classes = {t: (self.task_classes or {})[t] for t in chosen}

    def __len__(self) -> int:
        return len(self.labels)

    def _images(self) -> h5py.Dataset:
        if self._file is None:
            self._file = h5py.File(self.path, "r")
            self._dataset = self._file["images"]  # cached: a group lookup per item costs ~8 %
        return self._dataset

    def paths(self) -> list[str]:
        with h5py.File(self.path, "r") as f:
            return [p.decode() if isinstance(p, bytes) else str(p) for p in f["paths"][()]]

    def raw(self, index: int) -> bytes:
        """The stored bytes: JPEG data, or the raw array's bytes in a raw store."""
        return self._images()[index].tobytes()

    def array(self, index: int) -> np.ndarray:
        """The image as an (H, W, 3) uint8 array."""
        if self.is_raw:
            return self._images()[index]
        return np.asarray(self.image(index))

    def image(self, index: int) -> Image.Image:
        if self.is_raw:
            return Image.fromarray(self._images()[index])
        return Image.open(io.BytesIO(self.raw(index))).convert("RGB")

    def label(self, index: int) -> int | torch.Tensor:
        """An int, or one entry per task (a LongTensor) in a multi-task store."""
        value = self.labels[index]
        return int(value) if self.task_classes is None else torch.from_numpy(value.copy())

    def __getitem__(self, index: int) -> tuple[Any, int | torch.Tensor]:
        if self.encoded:
            return torch.from_numpy(self._images()[index]), self.label(index)
        img = self.image(index)
        if self.transform is not None:
            img = self.transform(img)
        return img, self.label(index)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"] = None  # h5py handles cannot cross process boundaries
        state.pop("_dataset", None)
        return state
