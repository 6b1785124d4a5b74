"""`python -m arttl.train +experiment=<preset> [backbone=...] [mode=...]`: one run (or a -m sweep)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import hydra
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig
from rich.table import Table

from arttl.cli import (
    display_path,
    output_console,
    remove_unused_run_dir,
    run_entry_point,
    user_errors,
)
from arttl.config import CONF_DIR
from arttl.errors import ConfigError
from arttl.results import own_checkpoint
from arttl.training.run import run_training

log = logging.getLogger("arttl.train")


METRICS = ("top1", "top3", "top5", "macro_top1", "loss")


def print_results(record: dict) -> None:
    """val/test metrics; a multi-task run's per task, then their mean (its top-level numbers)."""
    tasks = record.get("tasks") or {}
    title = f"{record['experiment']}: {record['backbone']} / {record['mode']}"
    table = Table(title=title + (" (one head per task)" if len(tasks) > 1 else ""))
    first = ["task", "split"] if tasks else ["split"]
    for col in first:
        table.add_column(col)
    for key in METRICS:
        table.add_column(key, justify="right")
    rows = [(t, s, info[s]) for t, info in tasks.items() for s in ("val", "test")]
    mean = "mean over tasks" if len(tasks) > 1 else None
    rows += [(mean, s, record[s]) for s in ("val", "test")] if not tasks or mean else []
    for task, split, m in rows:
        cells = ("—" if m.get(k) is None else f"{m[k]:.4f}" for k in METRICS)
        table.add_row(*([task or "", split] if tasks else [split]), *cells)
    output_console().print(table)


def print_outputs(record: dict, run_dir: str | Path) -> None:
    """The last lines: where the run wrote (also in <run folder>/train.log)."""
    run_dir = Path(run_dir)
    own = own_checkpoint(record)
    if not (run_dir / "results.json").is_file() and own:
        run_dir = Path(own).parents[1]  # a finished earlier run (resume)
    metrics = "; ".join(
        f"{split} " + " ".join(f"{k}={v:.4f}" for k, v in record[split].items() if v is not None)
        for split in ("val", "test")
    )
    log.info("%s", metrics, extra={"file_only": True})  # the table above, for the log file
    log.info("run folder: %s", display_path(run_dir))
    log.info("results:    %s", display_path(run_dir / "results.json"))
    if own:
        log.info("checkpoint: %s", display_path(own))
    if record.get("stable_checkpoint"):
        log.info(
            "stable copy: %s (the next run of this name, backbone and mode replaces it)",
            display_path(record["stable_checkpoint"]),
        )


def check_name(name: object) -> None:
    """``name`` becomes a folder under outputs/, multirun/ and checkpoints/: one plain word
    (``+`` joins the tasks of a multi-task default name, ``egypt_type+material__...``)."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", str(name)):
        raise ConfigError(
            f"name={name!r} must be one folder name (letters, digits, . _ - +), e.g. name=my_study."
        )


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
@user_errors
def main(cfg: DictConfig) -> float | None:
    check_name(cfg.name)
    started_in = cfg.run_dir
    record = run_training(cfg, cfg.run_dir)
    if rank_zero_only.rank == 0:  # DDP ranks > 0 ran the same job; one table is enough
        print_results(record)
        print_outputs(record, cfg.run_dir)
        if Path(cfg.run_dir) != Path(started_in):  # continued or found finished in an earlier one
            remove_unused_run_dir()  # the new one held only .hydra/ and a copy of the log
    return record["val"]["loss"]


def cli() -> None:
    """``arttl-train``, the same command as ``python -m arttl.train``."""
    run_entry_point(main)


if __name__ == "__main__":
    cli()
