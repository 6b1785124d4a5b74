"""`python -m arttl.export ckpt=<file> format=onnx|torchscript`: a standalone model file."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from arttl.cli import FAILURE_EXIT, display_path, fail, run_entry_point, user_errors
from arttl.config import CONF_DIR
from arttl.errors import ConfigError
from arttl.inference.exporting import FORMATS, SUFFIXES, ExportMismatch, export_checkpoint

log = logging.getLogger("arttl.export")


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="export")
@user_errors
def main(cfg: DictConfig) -> None:
    if OmegaConf.is_missing(cfg, "ckpt") or not cfg.ckpt:
        raise ConfigError("ckpt= is required: python -m arttl.export ckpt=<file.ckpt> format=onnx.")
    fmt = str(cfg.format)
    if fmt not in FORMATS:
        from arttl.errors import choice_error

        raise choice_error("format", fmt, FORMATS)
    out = cfg.out or Path(HydraConfig.get().runtime.output_dir) / (
        Path(cfg.ckpt).stem + SUFFIXES[fmt]
    )
    try:
        result = export_checkpoint(
            cfg.ckpt,
            fmt,
            out,
            include_normalization=bool(cfg.include_normalization),
            opset=cfg.opset,
            verify=bool(cfg.verify),
            atol=float(cfg.atol),
            rtol=float(cfg.rtol),
        )
    except ExportMismatch as err:  # arttl's failure, not a user mistake
        log.error("%s", err, extra={"file_only": True})
        fail(err, FAILURE_EXIT)
    check = (
        "not checked (install onnxruntime to check)"
        if result.max_abs_diff is None
        else f"matches the checkpoint (max |diff| {result.max_abs_diff:.2e})"
    )
    if result.task_diffs and cfg.verify:  # multi-task: one output per task, each checked
        per_task = ", ".join(f"{t} {d:.2e}" for t, d in result.task_diffs.items())
        check = f"one output per task, each matches the checkpoint (max |diff|: {per_task})"
    if not cfg.verify:
        check = "not checked (verify=false)"
    log.info("%s: %s", display_path(result.path), check)
    what = "tasks, their class names" if result.task_diffs is not None else "class names"
    log.info("%s: %s and preprocessing", display_path(result.sidecar), what)


def cli() -> None:
    """``arttl-export``, the same command as ``python -m arttl.export``."""
    run_entry_point(main)


if __name__ == "__main__":
    cli()
