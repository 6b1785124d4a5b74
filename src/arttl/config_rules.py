"""Config rules that span several keys, files on disk or the machine, each written once: the
up-front check (``rule_problems``, after the schema in arttl.config_schema holds) and the code that
relies on a rule call the same function, so the two cannot disagree."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from arttl.errors import ConfigError


def check_dataset_root(
    name: str, root: Any, reader: Any, store_dir: str | Path, reuse_store: bool = False
) -> None:
    """``dataset.root`` must exist, unless the reader takes no path (a hub id) or a prepared store
    is used without its source (``reuse_store``: store.check_source=false)."""
    from arttl.data.build import is_non_path_root
    from arttl.data.store import incomplete_splits

    if is_non_path_root(reader, root) or (root not in (None, "") and Path(str(root)).exists()):
        return
    prepared = not incomplete_splits(store_dir)
    if reuse_store and prepared:
        return
    raise ConfigError(
        f"dataset.root={str(root)!r} does not exist; point it at the {name} download, e.g. "
        f"`python -m arttl.prepare dataset={name} dataset.root=/path/to/{name}`"
        + (
            f" (or, to train from the prepared store {str(store_dir)!r} without checking "
            "its source, add store.check_source=false)."
            if prepared
            else "."
        )
    )


def check_raw_store(image_format: str, shorter_side: int | None) -> None:
    """``store.format=raw`` keeps square arrays of side ``store.shorter_side``: it needs one."""
    if image_format == "raw" and not shorter_side:
        raise ConfigError(
            "store.format=raw stores fixed-size arrays and needs store.shorter_side (the side of "
            f"the square images, e.g. store.shorter_side=256); got store.shorter_side={shorter_side!r}."
        )


def check_resume_source(resume: bool, ckpt_path: str | None) -> None:
    """``resume`` and ``ckpt_path`` both say where a run continues from; a given file must exist."""
    if resume and ckpt_path:
        raise ConfigError(
            f"resume=true and ckpt_path={ckpt_path!r} both say where to continue from; "
            "keep one (resume finds last.ckpt itself)."
        )
    if ckpt_path and not Path(str(ckpt_path)).is_file():
        raise ConfigError(f"ckpt_path={ckpt_path!r}: file not found; give a last.ckpt path.")


def check_gradual(mode: str, unfreeze: int | None, max_epochs: int, fast_dev_run: Any) -> None:
    """``mode=gradual`` needs the epoch its backbone joins; one at or after the last only warns."""
    if mode != "gradual":
        return
    if unfreeze is None:
        raise ConfigError("mode.unfreeze_at_epoch=None must be an integer >= 0 for mode=gradual.")
    if unfreeze >= max_epochs and not fast_dev_run:
        warnings.warn(  # legal (head-only training), but rarely what was meant
            f"mode.unfreeze_at_epoch={unfreeze} is not below trainer.max_epochs={max_epochs}: "
            "the backbone never trains in this run.",
            stacklevel=3,
        )


def check_accelerator(accelerator: str | None) -> None:
    """A GPU accelerator needs a visible CUDA device."""
    import torch

    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"trainer.accelerator={accelerator!r} but no CUDA device is visible; use "
            "trainer.accelerator=auto (or cpu)."
        )


def rule_problems(c: dict[str, Any]) -> list[str]:
    """Every rule's message for a train config that fits the schema (its defaults filled in)."""
    from hydra.utils import get_method

    from arttl.data.datamodule import check_gpu_decode
    from arttl.data.tasks import task_problems
    from arttl.models.backbone import check_backbone_name
    from arttl.models.transfer import check_mode
    from arttl.models.weights import check_weights
    from arttl.training.precision import check_precision

    mode, net, trainer, store, ds = (
        c[k] for k in ("mode", "backbone", "trainer", "store", "dataset")
    )
    problems: list[str] = []
    for rule, *args in (
        (check_mode, mode["name"], mode["partial_fraction"], net["weights"]),
        (check_backbone_name, net["name"]),
        (check_weights, net["name"], net["weights"], c["source_experiment"]),
        (check_gradual, mode["name"], mode["unfreeze_at_epoch"], trainer["max_epochs"], trainer.get("fast_dev_run")),
        (check_accelerator, trainer["accelerator"]),
        (check_gpu_decode, c["data"]["gpu_decode"]),
        (check_raw_store, store["format"], store["shorter_side"]),
        (check_dataset_root, ds["name"], ds["root"], get_method(ds["reader"]["_target_"]), store["dir"], not store["check_source"]),
        (check_resume_source, c["resume"], c["ckpt_path"]),
    ):  # fmt: skip
        try:
            rule(*args)
        except ConfigError as err:
            problems.append(str(err))
    if precision := check_precision(trainer.get("precision")):
        problems.append(precision)
    problems += task_problems(
        ds["challenge"], c.get("tasks"), c.get("task_weights"), store.get("stratify_on"),
        ds["reader"].get("label_map"),
    )  # fmt: skip
    return list(dict.fromkeys(problems))  # an unknown backbone fails two rules alike
