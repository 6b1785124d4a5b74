"""`python -m arttl.evaluate ckpt=<file> [split=test]`: metrics, per-class report and figures."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from rich.table import Table

from arttl.cli import display_path, output_console, run_entry_point, user_errors
from arttl.config import CONF_DIR
from arttl.errors import ConfigError
from arttl.inference.evaluation import evaluate_checkpoint
from arttl.models.classifier import METRIC_KEYS

log = logging.getLogger("arttl.evaluate")


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="evaluate")
@user_errors
def main(cfg: DictConfig) -> float:
    if OmegaConf.is_missing(cfg, "ckpt") or not cfg.ckpt:
        raise ConfigError("ckpt= is required: python -m arttl.evaluate ckpt=<file.ckpt>.")
    ev = evaluate_checkpoint(
        cfg.ckpt,
        out_dir=Path(cfg.out_dir or HydraConfig.get().runtime.output_dir),
        split=cfg.split,
        store=cfg.store.dir,
        top_n=int(cfg.top_n),
        mistakes=int(cfg.mistakes),
        batch_size=int(cfg.batch_size),
        num_workers=int(cfg.num_workers),
        device=cfg.device,
        allow_other_store=bool(cfg.get("allow_other_store", False)),
    )
    console = output_console()
    console.print(metrics_table(ev.metrics, Path(cfg.ckpt).name))
    log.info("%d files in %s (summary.md)", len(ev.files), display_path(ev.out_dir))
    return float(ev.metrics["top1"])  # a multi-task checkpoint: the mean over its tasks


KEYS = METRIC_KEYS  # the one list of reported metrics


def _cells(record: dict) -> list[str]:
    values = ["—" if record[k] is None else f"{record[k]:.4f}" for k in KEYS]
    lo, hi = record.get("top1_ci95") or (None, None)
    return [*values, "—" if lo is None else f"{lo:.4f}–{hi:.4f}"]


def metrics_table(m: dict, name: str) -> Table:
    """The terminal table: one row, or one row per task and their mean (multi-task)."""
    per_task = m.get("per_task")
    table = Table(title=f"{name} on {m['split']} ({m['samples']} images)")
    if per_task:
        table.add_column("task")
        table.add_column("images", justify="right")
    for key in KEYS:
        table.add_column(key, justify="right")
    table.add_column("top1 95 % CI (Wilson)", justify="right")
    if not per_task:
        table.add_row(*_cells(m))
        return table
    for task, record in per_task.items():
        table.add_row(task, str(record["samples"]), *_cells(record))
    table.add_row("mean", "", *_cells({**m, "top1_ci95": None}))
    return table


def cli() -> None:
    """``arttl-evaluate``, the same command as ``python -m arttl.evaluate``."""
    run_entry_point(main)


if __name__ == "__main__":
    cli()
