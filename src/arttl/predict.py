"""`python -m arttl.predict ckpt=<file> input=<image|folder|list>`: top-k labels per image."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, ListConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from arttl.cli import display_path, run_entry_point, user_errors
from arttl.config import CONF_DIR
from arttl.errors import ConfigError
from arttl.inference.prediction import (
    gather_inputs,
    load_classifier,
    predict_images,
    write_predictions,
)

log = logging.getLogger("arttl.predict")
TABLE_WIDTH = 80  # the terminal table; the files hold full paths and probabilities


def common_folder(paths: list[str]) -> Path | None:
    """The deepest folder holding every path (the input folder, for a folder input)."""
    if not paths:
        return None
    try:
        return Path(os.path.commonpath([str(Path(p).resolve().parent) for p in paths]))
    except ValueError:  # paths on different drives
        return None


def shown_path(path: str, root: Path | None) -> str:
    if root is None:
        return path
    try:
        return str(Path(path).resolve().relative_to(root))
    except ValueError:
        return path


def _required(cfg: DictConfig, key: str) -> object:
    if OmegaConf.is_missing(cfg, key) or cfg[key] in (None, ""):
        raise ConfigError(
            f"{key}= is required: python -m arttl.predict ckpt=<file.ckpt> input=<path>."
        )
    return cfg[key]


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="predict")
@user_errors
def main(cfg: DictConfig) -> None:
    ckpt = str(_required(cfg, "ckpt"))
    spec = _required(cfg, "input")
    spec = list(spec) if isinstance(spec, ListConfig) else str(spec)
    paths = gather_inputs(spec)  # before loading the model: a wrong path fails fast
    model = load_classifier(ckpt, cfg.device)
    result = predict_images(
        model,
        paths,
        top_k=int(cfg.top_k),
        batch_size=int(cfg.batch_size),
        num_workers=int(cfg.num_workers),
        shorter_side=cfg.shorter_side,
    )
    err = Console(stderr=True)
    for row in result.rejected.to_dict(orient="records"):
        err.print(f"skipped {row['path']}: {row['reason']}", highlight=False, soft_wrap=True)
    if result.table.empty:
        raise ConfigError(f"none of the {len(paths)} inputs could be read as an image (see above).")
    out_dir = Path(cfg.out_dir or HydraConfig.get().runtime.output_dir)
    meta = {"checkpoint": ckpt, "backbone": model.hparams["backbone"], "inputs": len(paths)}
    files = write_predictions(result, out_dir, meta)

    console = Console()
    k = result.top_k
    root = common_folder(result.table["path"].tolist())
    table = Table(
        title=f"{Path(ckpt).name}: top-{k} of {len(model.class_names)} classes",
        caption=f"images in {display_path(root)}" if root is not None else None,
    )
    table.add_column("image", overflow="fold")
    for rank in range(1, k + 1):
        table.add_column(f"#{rank}", overflow="fold")
    for row in result.table.head(int(cfg.show)).to_dict(orient="records"):
        table.add_row(
            shown_path(row["path"], root),
            *(f"{row[f'label_{r}']}\n{row[f'prob_{r}']:.1%}" for r in range(1, k + 1)),
        )
    console.print(table, width=min(console.width, TABLE_WIDTH))
    if len(result.table) > int(cfg.show):
        log.info("... %d more rows in %s", len(result.table) - int(cfg.show), files[0].name)
    log.info(
        "%d predicted, %d skipped -> %s (predictions.csv, predictions.json, rejected.csv)",
        len(result.table),
        len(result.rejected),
        display_path(out_dir),
    )


def cli() -> None:
    """``arttl-predict``, the same command as ``python -m arttl.predict``."""
    run_entry_point(main)


if __name__ == "__main__":
    cli()
