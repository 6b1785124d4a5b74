"""Turn a source table into the HDF5 split store: decode once (in parallel), split, write atomically."""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
from PIL import Image, ImageOps
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

import arttl
from arttl.atomic import atomic_path
from arttl.data.images import ImageRejected, encode_jpeg, load_rgb
from arttl.data.split import assign_splits
from arttl.data.store import (
    IMAGE_FORMATS,
    SPLITS,
    is_complete,
    read_attrs,
    split_file,
    write_split,
)
from arttl.errors import ConfigError, choice_error


@dataclass(frozen=True)
class StoreSettings:
    """How images are stored; part of the store's identity (its config hash)."""

    shorter_side: int | None = 384
    quality: int = 90
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    min_per_split: int = 1
    seed: int = 42
    format: str = "jpeg"  # "raw": square uint8 arrays of side shorter_side, no decode at load

    def __post_init__(self) -> None:
        if self.format not in IMAGE_FORMATS:
            raise choice_error("store.format", self.format, IMAGE_FORMATS)
        if self.format == "raw" and not self.shorter_side:
            raise ConfigError(
                "store.format=raw stores fixed-size arrays and needs store.shorter_side "
                "(the side of the square images, e.g. store.shorter_side=256); "
                f"got store.shorter_side={self.shorter_side!r}."
            )

    @property
    def raw_shape(self) -> tuple[int, int, int] | None:
        side = int(self.shorter_side or 0)
        return (side, side, 3) if self.format == "raw" else None


def config_hash(identity: dict[str, Any]) -> str:
    """A stable hash of everything that decides the store's contents."""
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def store_is_current(store_dir: Path, digest: str) -> bool:
    files = [split_file(store_dir, s) for s in SPLITS]
    if not all(f.is_file() and is_complete(f) for f in files):
        return False
    return all(read_attrs(f).get("config_hash") == digest for f in files)


def _decode(job: tuple[str, int | None, int, str]) -> tuple[bool, bytes | str]:
    path, shorter_side, quality, fmt = job
    try:
        img = load_rgb(path, shorter_side=shorter_side)  # JPEG draft: decoded at reduced scale
    except ImageRejected as err:
        return False, err.reason
    if fmt == "raw":
        assert shorter_side is not None
        # Fixed size for a dense array: scale the shorter side to the target, centre-crop the rest.
        img = ImageOps.fit(img, (shorter_side, shorter_side), Image.Resampling.LANCZOS)
        return True, np.asarray(img, dtype=np.uint8).tobytes()
    return True, encode_jpeg(img, quality=quality)


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )


def decode_all(
    paths: list[str], pool_file: Path, settings: StoreSettings, num_workers: int
) -> dict[int, str]:
    """Decode every image into ``pool_file`` in input order; return {row: reason} for rejects.

    ``imap`` keeps order, so the result is identical for any worker count.
    """
    jobs = [(p, settings.shorter_side, settings.quality, settings.format) for p in paths]
    rejected: dict[int, str] = {}
    with h5py.File(pool_file, "w") as f, _progress() as progress:
        ds = f.create_dataset("images", (len(paths),), dtype=h5py.vlen_dtype(np.uint8))
        task = progress.add_task("decoding images", total=len(paths))
        if num_workers > 1:
            ctx = mp.get_context("spawn" if os.name == "nt" else "fork")
            with ctx.Pool(num_workers) as pool:
                results = pool.imap(_decode, jobs, chunksize=16)
                _drain(results, ds, rejected, progress, task)
        else:
            _drain(map(_decode, jobs), ds, rejected, progress, task)
    return rejected


def _drain(results: Any, ds: h5py.Dataset, rejected: dict, progress: Progress, task: Any) -> None:
    for i, (ok, value) in enumerate(results):
        if ok:
            ds[i] = np.frombuffer(value, dtype=np.uint8)
        else:
            rejected[i] = value
        progress.advance(task)


def _class_names(
    split: pd.DataFrame, identity: dict[str, Any], settings: StoreSettings
) -> list[str]:
    """The classes a split keeps; fewer than 2 cannot train a classifier."""
    class_names = sorted(split["label"].unique())
    if len(class_names) < 2:
        raise ConfigError(
            f"dataset {identity.get('dataset')!r}/{identity.get('challenge')!r}: only "
            f"{len(class_names)} class(es) left after cleaning and splitting "
            f"(min_per_split={settings.min_per_split}); at least 2 are needed. Check the labels "
            "or lower store.min_per_split."
        )
    return class_names


def build_store(
    table: pd.DataFrame,
    store_dir: str | Path,
    identity: dict[str, Any],
    settings: StoreSettings,
    num_workers: int = 1,
    force: bool = False,
) -> dict[str, Any]:
    """Build (or reuse) the store for ``table``; return a summary (counts, rejects, dropped classes)."""
    store_dir = Path(store_dir)
    digest = config_hash({**identity, "settings": settings.__dict__, "rows": len(table)})
    if not force and store_is_current(store_dir, digest):
        return {
            "reused": True,
            "store": str(store_dir),
            **read_attrs(split_file(store_dir, "train")),
        }
    if table.empty:
        raise ConfigError(
            f"dataset.root={identity.get('root')!r}: no images were found to prepare."
        )
    table = table.sort_values("path", kind="stable").reset_index(drop=True)
    # Fail before decoding when even a perfect decode would leave < 2 classes.
    _class_names(
        assign_splits(table, settings.fractions, settings.seed, settings.min_per_split),
        identity,
        settings,
    )
    with atomic_path(store_dir) as tmp:
        tmp.mkdir(parents=True)
        pool_file = tmp / "_decoded.h5"
        rejected = decode_all(table["path"].tolist(), pool_file, settings, num_workers)
        rejected_df = pd.DataFrame(
            {"path": [table.at[i, "path"] for i in rejected], "reason": list(rejected.values())}
        )
        accepted = table.drop(index=list(rejected)).copy()
        accepted["row"] = accepted.index
        split = assign_splits(accepted, settings.fractions, settings.seed, settings.min_per_split)
        class_names = _class_names(split, identity, settings)
        index = {name: i for i, name in enumerate(class_names)}
        counts = {s: int((split["split"] == s).sum()) for s in SPLITS}
        attrs = {
            "source": str(identity.get("dataset")),
            "challenge": str(identity.get("challenge")),
            "root": str(identity.get("root")),
            "seed": settings.seed,
            "shorter_side": settings.shorter_side or 0,
            "jpeg_quality": settings.quality,
            "image_format": settings.format,
            "config_hash": digest,
            "config": json.dumps(identity, sort_keys=True, default=str),
            "arttl_version": arttl.__version__,
            "counts": json.dumps(counts),
            "num_classes": len(class_names),
            "rejected": len(rejected_df),
        }
        with h5py.File(pool_file, "r") as pool:
            images = pool["images"]
            for s in SPLITS:
                part = split[split["split"] == s]
                write_split(
                    tmp / f"{s}.h5",
                    (images[r].tobytes() for r in part["row"]),
                    np.array([index[lbl] for lbl in part["label"]], dtype=np.int64),
                    part["path"].tolist(),
                    class_names,
                    attrs,
                    raw_shape=settings.raw_shape,
                )
        pool_file.unlink()
        cols = ["path", "label", "split"] + (["group"] if "group" in split else [])
        split[cols].to_csv(tmp / "splits.csv", index=False)
        rejected_df.to_csv(tmp / "rejected.csv", index=False)
    return {
        "reused": False,
        "store": str(store_dir),
        "counts": counts,
        "num_classes": len(class_names),
        "rejected": rejected_df,
        "dropped_classes": split.attrs.get("dropped_classes", []),
    }


def prepare_dataset(
    name: str,
    challenge: str,
    root: str | Path,
    reader: Any,
    store_dir: str | Path,
    settings: StoreSettings,
    num_workers: int = 1,
    force: bool = False,
    reader_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Read a source with ``reader(root=, challenge=)`` and build its store (reused when current)."""
    if root in (None, "", "???") or not Path(root).exists():
        raise ConfigError(
            f"dataset.root={str(root)!r} does not exist; point it at the {name} download, e.g. "
            f"`python -m arttl.prepare dataset={name} dataset.root=/path/to/{name}`."
        )
    table = reader(root=root, challenge=challenge)
    identity = {
        "dataset": name,
        "challenge": challenge,
        "root": str(Path(root).resolve()),
        "reader": reader_options or {},
        "paths_digest": config_hash(sorted(table["path"].tolist())),
    }
    return build_store(table, store_dir, identity, settings, num_workers=num_workers, force=force)
