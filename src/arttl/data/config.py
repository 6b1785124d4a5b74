"""Read the dataset / store / prepare parts of a composed config into plain typed arguments."""

from __future__ import annotations

import os
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from arttl.data.build import StoreSettings, prepare_dataset


def store_settings(cfg: DictConfig) -> StoreSettings:
    s = cfg.store
    return StoreSettings(
        shorter_side=s.shorter_side,
        quality=int(s.quality),
        fractions=tuple(float(f) for f in s.fractions),
        min_per_split=int(s.min_per_split),
        seed=int(s.get("seed", 42)),
        format=str(s.get("format", "jpeg")),
        split_by=str(s.get("split_by", "label")),
        max_per_class=None if s.get("max_per_class") is None else int(s.max_per_class),
    )


def prepare_from_config(cfg: DictConfig, force: bool = False) -> dict[str, Any]:
    """Build (or reuse) the store that ``cfg.dataset`` + ``cfg.store`` describe."""
    ds = cfg.dataset
    workers = cfg.get("num_workers") or os.cpu_count() or 1
    options = OmegaConf.to_container(ds.reader, resolve=True)
    return prepare_dataset(
        name=ds.name,
        challenge=ds.challenge,
        root=ds.root,
        reader=instantiate(ds.reader),
        store_dir=cfg.store.dir,
        settings=store_settings(cfg),
        num_workers=int(workers),
        force=force,
        reader_options=options,
        check_source=bool(cfg.store.get("check_source", True)),
    )
