"""Read the dataset / store / prepare parts of a composed config into plain typed arguments."""

from __future__ import annotations

import os
from dataclasses import fields
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from arttl.config_schema import NOT_ARGUMENTS
from arttl.data.build import StoreSettings, prepare_dataset


def store_settings(cfg: DictConfig) -> StoreSettings:
    """``cfg.store``'s keys that StoreSettings holds (its defaults for the absent ones); the config
    check has typed them, and StoreSettings checks itself again."""
    values = {f.name: cfg.store[f.name] for f in fields(StoreSettings) if f.name in cfg.store}
    if "fractions" in values:  # [1, 0, 0] and [1.0, 0.0, 0.0] must hash alike
        values["fractions"] = tuple(float(x) for x in values["fractions"])
    return StoreSettings(**values)


def prepare_from_config(cfg: DictConfig, force: bool = False) -> dict[str, Any]:
    """Build (or reuse) the store that ``cfg.dataset`` + ``cfg.store`` describe."""
    ds = cfg.dataset
    workers = cfg.get("num_workers") or os.cpu_count() or 1
    options = OmegaConf.to_container(ds.reader, resolve=True)
    # label_map is arttl's (applied to whatever the reader returns), not a reader argument,
    # though it is part of the source's identity (reader_options)
    ours = NOT_ARGUMENTS["dataset.reader"]
    reader = instantiate({k: v for k, v in options.items() if k not in ours})
    return prepare_dataset(
        name=ds.name,
        challenge=ds.challenge,
        root=ds.root,
        reader=reader,
        store_dir=cfg.store.dir,
        settings=store_settings(cfg),
        num_workers=int(workers),
        force=force,
        reader_options=options,
        check_source=bool(cfg.store.get("check_source", True)),
    )
