"""`python -m arttl.predict ckpt=<file> input=<image|folder|list>`: top-k labels per image."""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, ListConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from arttl.cli import user_errors
from arttl.config import CONF_DIR
from arttl.errors import ConfigError
from arttl.inference.prediction import (
    gather_inputs,
    load_classifier,
    predict_images,
    write_predictions,
)


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
    table = Table(title=f"{Path(ckpt).name}: top-{k} of {len(model.class_names)} classes")
    table.add_column("image", overflow="fold")
    for rank in range(1, k + 1):
        table.add_column(f"#{rank}", overflow="fold")
    for row in result.table.head(int(cfg.show)).to_dict(orient="records"):
        table.add_row(
            row["path"], *(f"{row[f'label_{r}']} ({row[f'prob_{r}']:.1%})" for r in range(1, k + 1))
        )
    console.print(table)
    if len(result.table) > int(cfg.show):
        console.print(f"... {len(result.table) - int(cfg.show)} more rows in {files[0]}")
    summary = f"{len(result.table)} predicted, {len(result.rejected)} skipped -> {out_dir}"
    console.print(summary, highlight=False)


if __name__ == "__main__":
    main()
