"""`python -m arttl.prepare dataset=<name> dataset.root=<dir>`: raw collection -> HDF5 split store."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from arttl.cli import run_entry_point, user_errors
from arttl.config import CONF_DIR
from arttl.data.config import prepare_from_config
from arttl.data.summary import print_store_summary


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="prepare")
@user_errors
def main(cfg: DictConfig) -> None:
    print_store_summary(prepare_from_config(cfg, force=bool(cfg.force)))


if __name__ == "__main__":
    run_entry_point(main)
