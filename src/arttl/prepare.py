"""`python -m arttl.prepare dataset=<name> dataset.root=<dir>`: raw collection -> HDF5 split store."""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

from arttl.cli import display_path, run_entry_point, user_errors
from arttl.config import CONF_DIR
from arttl.data.config import prepare_from_config
from arttl.data.summary import print_store_summary

log = logging.getLogger("arttl.prepare")


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="prepare")
@user_errors
def main(cfg: DictConfig) -> None:
    summary = prepare_from_config(cfg, force=bool(cfg.force))
    print_store_summary(summary)
    log.info("store: %s (train.h5, val.h5, test.h5, splits.csv)", display_path(summary["store"]))


def cli() -> None:
    """``arttl-prepare``, the same command as ``python -m arttl.prepare``."""
    run_entry_point(main)


if __name__ == "__main__":
    cli()
