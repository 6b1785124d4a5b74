"""`python -m arttl.saliency images=<file|folder> models=[imagenet,<run.ckpt>] method=<name>`.

Renders what each network looks at (the paper's θ-versus-θ̂ figure), writes the raw maps and
an agreement CSV, and prints the agreement table. Undecodable images are listed and skipped.
``task=<name>`` picks the head of multi-task checkpoints (default: each one's first task).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pandas as pd
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, ListConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from arttl.cli import display_path, output_console, run_entry_point, user_errors
from arttl.config import CONF_DIR
from arttl.errors import ConfigError
from arttl.explain.compare import CompareOptions, Comparison, compare_models
from arttl.explain.figure import check_cmap, model_tags, write_outputs
from arttl.explain.inputs import list_images
from arttl.explain.methods import check_method
from arttl.explain.models import load_models

log = logging.getLogger("arttl.saliency")


def _as_list(value: Any) -> Any:
    return list(value) if isinstance(value, ListConfig | list | tuple) else value


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "—"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def print_agreement(comparison: Comparison, console: Console) -> None:
    """The numbers per image and pair of models (top-1 labels are in the figure and the CSV)."""
    df: pd.DataFrame = comparison.agreement
    tags = dict(zip(comparison.model_names, model_tags(len(comparison.model_names)), strict=True))
    tasks = dict(zip(comparison.model_names, comparison.tasks, strict=False))
    for name, tag in tags.items():
        task = f" (task {tasks[name]})" if tasks.get(name) else ""
        console.print(f"{tag}: {name}{task}")
    table = Table(title=f"{comparison.method}: agreement between models")
    table.add_column("image", no_wrap=True)
    table.add_column("model a")
    table.add_column("model b")
    table.add_column("spearman", justify="right")
    table.add_column(f"IoU top {comparison.top_fraction:.0%}", justify="right")
    table.add_column("deletion AUC a / random", justify="right")
    table.add_column("deletion AUC b / random", justify="right")
    for row in df.to_dict("records"):
        table.add_row(
            row["image"],
            tags.get(row["model_a"], row["model_a"]),
            tags.get(row["model_b"], "—") if row["model_b"] else "—",
            _fmt(row["spearman"]),
            _fmt(row["top_iou"]),
            f"{_fmt(row['deletion_auc_a'])} / {_fmt(row['random_auc_a'])}",
            f"{_fmt(row['deletion_auc_b'])} / {_fmt(row['random_auc_b'])}",
        )
    console.print(table)
    console.print(
        "A deletion AUC below its random one: the map points at pixels the prediction uses."
    )


def run_saliency(cfg: DictConfig, out_dir: str | Path) -> dict[str, Path]:
    """Check the config, load the models, explain every image, write the four files."""
    console = output_console()
    options = OmegaConf.to_container(cfg.method_options, resolve=True) if cfg.method_options else {}
    if not isinstance(options, dict):
        raise ConfigError(f"method_options={options!r} must be a mapping, e.g. {{n_steps: 64}}.")
    check_method(cfg.method, options)
    check_cmap(cfg.cmap)
    images = list_images(_as_list(cfg.images), cfg.max_images)
    backbone = cfg.backbone.name if cfg.get("backbone") else None
    models = load_models(
        _as_list(cfg.models),
        backbone=backbone,
        device=cfg.device,
        names=_as_list(cfg.get("model_names")),
        task=None if cfg.get("task") in (None, "") else str(cfg.task),
    )
    compare = CompareOptions(
        method=cfg.method,
        target=cfg.target,
        top_fraction=float(cfg.top_fraction),
        deletion_steps=int(cfg.deletion_steps),
        deletion_random=int(cfg.deletion_random),
        method_options=options,
        seed=int(cfg.seed),
    )
    comparison = compare_models(models, images, compare, progress=console.print)
    if not comparison.images:
        raise ConfigError(
            f"images={cfg.images!s}: none of the {len(images)} files could be decoded "
            f"({'; '.join(f'{n}: {r}' for n, r in comparison.skipped)})."
        )
    for note in comparison.notes:
        console.print(f"[yellow]note:[/yellow] {note}")
    paths = write_outputs(comparison, out_dir, cmap=cfg.cmap, alpha=float(cfg.overlay_alpha))
    print_agreement(comparison, console)
    if comparison.skipped:
        listed = "; ".join(f"{n} ({r})" for n, r in comparison.skipped)
        console.print(f"[yellow]skipped {len(comparison.skipped)} image(s):[/yellow] {listed}")
    for kind, path in paths.items():  # the last lines: where each file went, unwrapped
        console.print(f"{kind}: {display_path(path)}", soft_wrap=True, highlight=False)
    return paths


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="saliency")
@user_errors
def main(cfg: DictConfig) -> None:
    out_dir = cfg.out_dir or HydraConfig.get().runtime.output_dir
    paths = run_saliency(cfg, out_dir)  # prints where each file went
    log.info(
        "wrote %s", ", ".join(display_path(p) for p in paths.values()), extra={"file_only": True}
    )


def cli() -> None:
    """``arttl-saliency``, the same command as ``python -m arttl.saliency``."""
    run_entry_point(main)


if __name__ == "__main__":
    cli()
