"""`python -m arttl.train +experiment=<preset> [backbone=...] [mode=...]`: one run (or a -m sweep)."""

from __future__ import annotations

import hydra
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from arttl.cli import run_entry_point, user_errors
from arttl.config import CONF_DIR
from arttl.training.run import run_training


def print_results(record: dict) -> None:
    table = Table(title=f"{record['experiment']}: {record['backbone']} / {record['mode']}")
    table.add_column("split")
    for key in ("top1", "top3", "top5", "macro_top1", "loss"):
        table.add_column(key, justify="right")
    for split in ("val", "test"):
        m = record[split]
        table.add_row(split, *("—" if m[k] is None else f"{m[k]:.4f}" for k in m))
    Console().print(table)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
@user_errors
def main(cfg: DictConfig) -> float | None:
    record = run_training(cfg, cfg.run_dir)
    if rank_zero_only.rank == 0:  # DDP ranks > 0 ran the same job; one table is enough
        print_results(record)
    return record["val"]["loss"]


if __name__ == "__main__":
    run_entry_point(main)
