"""`python -m arttl.evaluate ckpt=<file> [split=test]`: metrics, per-class report and figures."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from arttl.cli import display_path, run_entry_point, user_errors
from arttl.config import CONF_DIR
from arttl.errors import ConfigError
from arttl.inference.evaluation import evaluate_checkpoint

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
    m = ev.metrics
    table = Table(title=f"{Path(cfg.ckpt).name} on {m['split']} ({m['samples']} images)")
    keys = ("top1", "top3", "top5", "macro_top1", "loss")
    for key in keys:
        table.add_column(key, justify="right")
    table.add_column("top1 95 % CI (Wilson)", justify="right")
    lo, hi = m["top1_ci95"]
    table.add_row(*("—" if m[k] is None else f"{m[k]:.4f}" for k in keys), f"{lo:.4f}–{hi:.4f}")
    console = Console()
    console.print(table)
    log.info("%d files in %s (summary.md)", len(ev.files), display_path(ev.out_dir))
    return float(m["top1"])


def cli() -> None:
    """``arttl-evaluate``, the same command as ``python -m arttl.evaluate``."""
    run_entry_point(main)


if __name__ == "__main__":
    cli()
