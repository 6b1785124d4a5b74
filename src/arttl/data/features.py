"""Feature cache for off-the-shelf training: the frozen backbone runs once per split, ever."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from arttl.atomic import atomic_path
from arttl.data.store import SPLITS, H5ImageDataset, read_attrs, split_file
from arttl.data.transforms import build_transform
from arttl.inference.runner import predict_batches, resolve_device


def weights_digest(module: nn.Module) -> str:
    """Hash of the actual tensors, so any change of weights (file, seed, checkpoint) misses the cache."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def cache_key(backbone_digest: str, store_dir: str | Path, split: str, data_config: dict) -> str:
    """Weights x store contents x split x preprocessing: a rebuilt store with other pixels,
    labels or split (even under the same settings) never hits an old cache entry."""
    attrs = read_attrs(split_file(store_dir, split))
    store_hash = attrs.get("content_hash") or attrs.get("config_hash", "")
    ident = {"weights": backbone_digest, "store": store_hash, "split": split, "data": data_config}
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:20]


def extract(
    model: Any, loader: DataLoader, description: str = "features"
) -> tuple[np.ndarray, np.ndarray]:
    """Pooled backbone features and labels of every image in ``loader``: the one inference loop
    (``predict_batches``, eval mode, no augmentation), in bf16 on CUDA (the backbone is frozen)."""
    feats, labels = [], []
    for (_, y), f in predict_batches(model, loader, "features", description, bf16=True):
        feats.append(f.numpy())
        labels.append(y.numpy())
    return np.concatenate(feats), np.concatenate(labels)


def _read(path: Path, labels_shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """A complete cache file whose labels have the split's shape: (N,) for a one-task store,
    (N, tasks) for a multi-task one (every task's column, whatever the run trains); else None
    (interrupted, or not written for this store's layout: extracted again)."""
    try:
        with h5py.File(path, "r") as f:
            if not f.attrs.get("complete", False):
                return None
            if f["labels"].shape != labels_shape or f["features"].shape[0] != labels_shape[0]:
                return None
            return torch.from_numpy(f["features"][()]), torch.from_numpy(f["labels"][()])
    except (OSError, KeyError):
        return None


def _labels_shape(path: Path) -> tuple[int, ...]:
    with h5py.File(path, "r") as f:
        return tuple(f["labels"].shape)


def cached_features(
    model: Any,
    store_dir: str | Path,
    cache_dir: str | Path,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str | torch.device | None = None,
    digest: str | None = None,
) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], dict[str, bool]]:
    """Features for train/val/test from the cache, extracting (and caching) the missing splits.

    ``model`` is an ArtClassifier (its ``predict_step`` gives the features); ``device`` as in
    ``resolve_device`` (None: the GPU when there is one). ``digest`` is
    ``weights_digest(model.backbone)`` when the caller has it already.
    Returns the features and, per split, whether it came from the cache.

    One cache serves every head of a store: the labels are the store's, all its task columns
    for a multi-task store ((N, tasks), -1: no label), and the key holds no task, as features
    do not depend on what the head learns; ``FeatureDataModule`` picks a model's columns.
    """
    device = resolve_device(device)
    digest = digest or weights_digest(model.backbone)
    transform = build_transform(model.data_config, training=False)
    out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    hits: dict[str, bool] = {}
    model.to(device)
    for split in SPLITS:
        key = cache_key(digest, store_dir, split, model.data_config)
        path = Path(cache_dir) / "features" / f"{split}-{key}.h5"
        got = _read(path, _labels_shape(split_file(store_dir, split))) if path.is_file() else None
        hits[split] = got is not None
        if got is None:
            ds = H5ImageDataset(split_file(store_dir, split), transform)  # all task columns
            loader = DataLoader(ds, batch_size=batch_size, num_workers=num_workers)
            with torch.random.fork_rng():  # a cache miss must not shift later random draws
                x, y = extract(model, loader, f"features {split}")
            with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
                f.create_dataset("features", data=x.astype(np.float32))
                f.create_dataset("labels", data=y.astype(np.int64))
                f.attrs["key"] = key
                f.attrs["complete"] = True
            got = torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.int64))
        out[split] = got
    model.to("cpu")
    return out, hits
