"""`python -m arttl.predict ckpt=<file> input=<image|folder|list>`: top-k labels per image."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, ListConfig, OmegaConf
from rich.table import Table

from arttl.cli import display_path, output_console, run_entry_point, user_errors
from arttl.config import CONF_DIR
from arttl.errors import ConfigError
from arttl.inference.prediction import (
    Predictions,
    gather_inputs,
    load_classifier,
    predict_images,
    write_predictions,
)
from arttl.models.classifier import ArtClassifier

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


def _ranks_cell(row: dict[str, Any], prefix: str, ranks: list[int]) -> str:
    """One rank: the label over its probability; a task's ranks: a "label prob" line each."""
    sep = " " if prefix else "\n"
    return "\n".join(
        f"{row[f'{prefix}label_{r}']}{sep}{row[f'{prefix}prob_{r}']:.1%}" for r in ranks
    )


def predictions_table(result: Predictions, model: ArtClassifier, name: str, show: int) -> Table:
    """The terminal table: a column per rank, or (multi-task) a column per task listing its
    ranks, since a rank column per task and rank would not fit a terminal."""
    root = common_folder(result.table["path"].tolist())
    tasks = result.task_k or {"": result.top_k}
    title = f"{name}: top-{result.top_k} of {len(model.class_names)} classes"
    if result.task_k is not None:
        title = f"{name}: top-{result.top_k} per task ({', '.join(tasks)})"
    table = Table(
        title=title, caption=f"images in {display_path(root)}" if root is not None else None
    )
    table.add_column("image", overflow="fold")
    columns: list[tuple[str, list[int]]] = []
    for task, k in tasks.items():
        if task:
            table.add_column(task, overflow="fold")
            columns.append((f"{task}_", list(range(1, k + 1))))
        else:
            for rank in range(1, k + 1):
                table.add_column(f"#{rank}", overflow="fold")
                columns.append(("", [rank]))
    for row in result.table.head(show).to_dict(orient="records"):
        cells = [_ranks_cell(row, prefix, ranks) for prefix, ranks in columns]
        table.add_row(shown_path(row["path"], root), *cells)
    return table


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
    err = output_console(stderr=True)
    for row in result.rejected.to_dict(orient="records"):
        err.print(f"skipped {row['path']}: {row['reason']}", highlight=False, soft_wrap=True)
    if result.table.empty:
        raise ConfigError(f"none of the {len(paths)} inputs could be read as an image (see above).")
    out_dir = Path(cfg.out_dir or HydraConfig.get().runtime.output_dir)
    meta = {"checkpoint": ckpt, "backbone": model.hparams["backbone"], "inputs": len(paths)}
    files = write_predictions(result, out_dir, meta)

    console = output_console()
    table = predictions_table(result, model, Path(ckpt).name, int(cfg.show))
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
