"""Check a composed train config before any data is touched: one message per mistake, all at once.

The schema is the conf/ tree itself (every key any YAML of a group sets, with the types seen
there) plus the call signature of every ``_target_``, so a key added to a YAML needs no second
declaration here. Ranges and mode/backbone combinations are the explicit table below.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from arttl.config import CONF_DIR
from arttl.errors import ConfigError, choice_error

HYDRA_RESERVED = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}
EXTRA_GROUPS = ("experiment", "hparams_search")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu", "hpu")
METRICS = tuple(
    f"{stage}/{m}"
    for stage in ("train", "val")
    for m in ("loss", "top1", "top3", "top5", "macro_top1")
)


@dataclass
class Schema:
    """Keys and leaf types seen anywhere in the YAML files of conf/ (a union over choices)."""

    children: dict[str, Schema] = field(default_factory=dict)
    types: set[type] = field(default_factory=set)

    def add(self, value: Any) -> None:
        if isinstance(value, dict):
            self.types.add(dict)
            for key, child in value.items():
                self.children.setdefault(str(key), Schema()).add(child)
        else:
            self.types.add(type(value))


def _groups(train_yaml: dict[str, Any]) -> list[str]:
    names = []
    for entry in train_yaml.get("defaults", []):
        if isinstance(entry, dict):
            key = next(iter(entry)).replace("optional ", "").replace("override ", "")
            if key.startswith("hydra/"):  # Hydra's own groups (job_logging): not config keys
                continue
            names.append(key.split("@")[0].strip("/"))
    return [*names, *EXTRA_GROUPS]


def _content(path: Path) -> tuple[Any, bool]:
    """A YAML's content without ``defaults``/``hydra``, and whether it is ``@package _global_``."""
    text = path.read_text(encoding="utf-8")
    is_global = "@package _global_" in "\n".join(text.splitlines()[:3])
    node = OmegaConf.to_container(OmegaConf.load(path), resolve=False) or {}
    if isinstance(node, dict):
        node = {k: v for k, v in node.items() if k not in ("defaults", "hydra")}
    return node, is_global


@functools.cache
def train_schema(conf_dir: Path = CONF_DIR) -> Schema:
    """The schema of ``train.yaml`` and every option of every group it (or +experiment) uses."""
    root = Schema()
    train, _ = _content(conf_dir / "train.yaml")
    root.add(train)
    for group in _groups(OmegaConf.to_container(OmegaConf.load(conf_dir / "train.yaml"))):
        for path in sorted((conf_dir / group).rglob("*.yaml")):
            node, is_global = _content(path)
            if is_global:
                root.add(node)
            else:
                root.add({group: node})
    return root


# -- structure: unknown keys, wrong types, unimportable targets ------------------------------------
def _unknown(key: str, name: str, choices: Iterable[str], fix: str) -> str:
    choices = sorted(choices)
    close = difflib.get_close_matches(name, choices, n=3)
    if close:
        return f"{key}: unknown key; did you mean {', '.join(close)}? {fix}"
    return f"{key}: unknown key; known keys here: {', '.join(choices)}. {fix}"


def _type_problem(key: str, value: Any, allowed: set[type]) -> str | None:
    allowed = allowed - {type(None), dict}
    if not allowed or value is None:
        return None
    if isinstance(value, bool):
        ok = bool in allowed
    elif isinstance(value, int):
        ok = int in allowed or float in allowed
    elif isinstance(value, float):
        ok = float in allowed
    else:
        ok = type(value) in allowed
    if ok:
        return None
    names = {
        bool: "true/false",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
    }
    want = " or ".join(sorted(names.get(t, t.__name__) for t in allowed))
    return f"{key}={value!r} must be {want}."


def _target_problems(key: str, node: dict[str, Any]) -> list[str]:
    target = node["_target_"]
    try:
        obj = get_object(str(target))
    except Exception as err:  # ImportError, AttributeError, ... all mean "no such thing"
        return [f"{key}._target_={target!r} cannot be imported ({err}); fix the dotted path."]
    problems = []
    try:
        params = inspect.signature(obj).parameters
    except (TypeError, ValueError):
        params = {}
    if params and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        for name in node:
            if name not in HYDRA_RESERVED and name not in params:
                names = [p for p in params if p not in ("self", "args", "kwargs")]
                problems.append(_unknown(f"{key}.{name}", name, names, f"{target} takes them."))
    for name, value in node.items():
        if isinstance(value, dict) and "_target_" in value:
            problems += _target_problems(f"{key}.{name}", value)
    return problems


def structure_problems(value: Any, schema: Schema, key: str = "") -> list[str]:
    """Unknown keys (with close matches), wrong leaf types and broken ``_target_`` nodes."""
    if isinstance(value, dict) and "_target_" in value:
        return _target_problems(key, value)
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return [
            p for i, v in enumerate(value) for p in structure_problems(v, Schema(), f"{key}[{i}]")
        ]
    if not isinstance(value, dict):
        return [p] if (p := _type_problem(key, value, schema.types)) else []
    problems = []
    for name, child in value.items():
        sub = f"{key}.{name}" if key else str(name)
        if key == "callbacks":  # free names, each a Lightning callback or null
            if child is not None:
                problems += structure_problems(child, Schema(), sub)
        elif name not in schema.children:
            fix = "Remove it, or add it to the YAML of that group if arttl should read it."
            problems.append(_unknown(sub, str(name), schema.children, fix))
        else:
            problems += structure_problems(child, schema.children[name], sub)
    return problems


# -- ranges and combinations ------------------------------------------------------------------------
def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


Check = tuple[str, Callable[[Any], bool], str, str]
RANGES: tuple[Check, ...] = (
    ("seed", lambda v: _is_int(v) and v >= 0, "an integer >= 0", "e.g. seed=42"),
    ("mode.optimizer.lr", lambda v: _is_num(v) and v > 0, "a number > 0", "the paper used 1e-3"),
    ("data.batch_size", lambda v: _is_int(v) and v >= 1, "an integer >= 1", "the paper used 32"),
    (
        "data.feature_batch_size",
        lambda v: v is None or (_is_int(v) and v >= 1),
        "null or an integer >= 1",
        "null uses data.batch_size",
    ),
    (
        "data.num_workers",
        lambda v: _is_int(v) and v >= 0,
        "an integer >= 0",
        "0 decodes in the main process",
    ),
    (
        "data.hflip",
        lambda v: _is_num(v) and 0 <= v <= 1,
        "a probability in [0, 1]",
        "0 turns flips off",
    ),
    (
        "data.scale",
        lambda v: _pair(v),
        "two numbers 0 < min <= max <= 1",
        "RandomResizedCrop's area range, e.g. [0.5, 1.0]",
    ),
    (
        "trainer.max_epochs",
        lambda v: _is_int(v) and v >= 1,
        "an integer >= 1",
        "e.g. 100 with early stopping",
    ),
    (
        "trainer.num_nodes",
        lambda v: v is None or (_is_int(v) and v >= 1),
        "an integer >= 1",
        "1 for one machine",
    ),
    (
        "callbacks.early_stopping.patience",
        lambda v: _is_int(v) and v >= 0,
        "an integer >= 0",
        "epochs without lower val/loss before stopping; the paper used 7",
    ),
    (
        "backbone.image_size",
        lambda v: v is None or (_is_int(v) and v >= 16),
        "null or an integer >= 16",
        "null uses the backbone's own input size",
    ),
    (
        "store.shorter_side",
        lambda v: v is None or (_is_int(v) and v >= 16),
        "null or an integer >= 16",
        "null keeps the original size",
    ),
    ("store.quality", lambda v: _is_int(v) and 1 <= v <= 100, "an integer in [1, 100]", "e.g. 90"),
    ("store.min_per_split", lambda v: _is_int(v) and v >= 0, "an integer >= 0", "e.g. 1"),
    ("store.seed", lambda v: _is_int(v), "an integer", "the split's seed, e.g. 42"),
    (
        "store.split_by",
        lambda v: v in ("label", "group"),
        "label or group",
        "group keeps each artist/group in one split",
    ),
    (
        "store.max_per_class",
        lambda v: v is None or (_is_int(v) and v >= 3),
        "null or an integer >= 3",
        "null keeps every image; e.g. 100 for a budgeted study",
    ),
    (
        "store.fractions",
        lambda v: _fractions(v),
        "three numbers >= 0 that sum to 1",
        "train/val/test, e.g. [0.8, 0.1, 0.1]",
    ),
    (
        "mode.backbone_lr_ratio",
        lambda v: v is None or (_is_num(v) and v > 0),
        "a number > 0",
        "e.g. 0.1",
    ),
)


def _pair(v: Any) -> bool:
    return (
        isinstance(v, list) and len(v) == 2 and all(_is_num(x) for x in v) and 0 < v[0] <= v[1] <= 1
    )


def _fractions(v: Any) -> bool:
    return (
        isinstance(v, list)
        and len(v) == 3
        and all(_is_num(x) and x >= 0 for x in v)
        and abs(sum(v) - 1.0) < 1e-6
    )


def _select(c: dict[str, Any], key: str) -> tuple[bool, Any]:
    node: Any = c
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def range_problems(c: dict[str, Any], skip: Iterable[str] = ()) -> list[str]:
    """Values outside their range; keys in ``skip`` (already reported) are left out."""
    problems = []
    for key, ok, want, fix in RANGES:
        present, value = _select(c, key)
        if present and key not in skip and not ok(value):
            problems.append(f"{key}={value!r} must be {want}; {fix}.")
    return problems


def combination_problems(c: dict[str, Any]) -> list[str]:
    """Mode/backbone/weights/trainer combinations that cannot work, and paths that must exist."""
    from arttl.models.backbone import check_backbone_name
    from arttl.models.transfer import check_mode

    problems: list[str] = []
    mode, backbone, trainer = c.get("mode", {}), c.get("backbone", {}), c.get("trainer", {})
    weights = backbone.get("weights")
    for check in (
        lambda: check_mode(mode.get("name"), mode.get("partial_fraction", 0.2), weights),
        lambda: check_backbone_name(backbone.get("name")),
        lambda: _check_weights(c),
        lambda: _check_store_or_root(c),
    ):
        try:
            check()
        except ConfigError as err:
            problems.append(str(err))
    unfreeze, epochs = mode.get("unfreeze_at_epoch"), trainer.get("max_epochs")
    if mode.get("name") == "gradual":
        if not (_is_int(unfreeze) and unfreeze >= 0):
            problems.append(
                f"mode.unfreeze_at_epoch={unfreeze!r} must be an integer >= 0 for mode=gradual."
            )
        elif _is_int(epochs) and unfreeze >= epochs and not trainer.get("fast_dev_run"):
            warnings.warn(  # legal (head-only training), but rarely what was meant
                f"mode.unfreeze_at_epoch={unfreeze} is not below trainer.max_epochs={epochs}: the "
                "backbone never trains in this run.",
                stacklevel=2,
            )
    accelerator = trainer.get("accelerator")
    if accelerator is not None and accelerator not in ACCELERATORS:
        problems.append(str(choice_error("trainer.accelerator", accelerator, ACCELERATORS)))
    elif accelerator in ("gpu", "cuda"):
        import torch

        if not torch.cuda.is_available():
            problems.append(
                f"trainer.accelerator={accelerator!r} but no CUDA device is visible; use "
                "trainer.accelerator=auto (or cpu)."
            )
    from arttl.training.precision import check_precision

    if (problem := check_precision(trainer.get("precision"))) is not None:
        problems.append(problem)
    for name, cb in (c.get("callbacks") or {}).items():
        monitor = cb.get("monitor") if isinstance(cb, dict) else None
        if monitor is not None and monitor not in METRICS:
            problems.append(str(choice_error(f"callbacks.{name}.monitor", monitor, METRICS)))
    if c.get("resume") and c.get("ckpt_path"):
        problems.append(
            f"resume=true and ckpt_path={c['ckpt_path']!r} both say where to continue from; "
            "keep one (resume finds last.ckpt itself)."
        )
    elif c.get("ckpt_path") and not Path(str(c["ckpt_path"])).is_file():
        problems.append(f"ckpt_path={c['ckpt_path']!r}: file not found; give a last.ckpt path.")
    return problems


def _check_weights(c: dict[str, Any]) -> None:
    from arttl.models.backbone import (
        CHECKPOINT_SUFFIXES,
        WEIGHT_FILE_SUFFIXES,
        check_backbone_name,
    )
    from arttl.models.weights import IMAGENET, check_pretrained_available, is_imagenet

    name, raw = c["backbone"].get("name"), c["backbone"].get("weights")
    weights = str(raw)
    if raw in (None, "", "none", "None", False):
        return
    if weights.endswith(CHECKPOINT_SUFFIXES) and not Path(weights).is_file():
        source = c.get("source_experiment")
        hint = (
            f"`python -m arttl.train +experiment={source} backbone={Path(weights).stem.split('-')[0]} "
            "mode=fine_tune` produces it."
            if source
            else "Train that run first or fix the path."
        )
        raise ConfigError(f"backbone.weights={weights!r}: checkpoint not found. {hint}")
    if weights.endswith(WEIGHT_FILE_SUFFIXES) and not Path(weights).is_file():
        raise ConfigError(f"backbone.weights={weights!r}: file not found.")
    if is_imagenet(weights):
        try:
            check_backbone_name(name)
        except ConfigError:
            return  # the backbone-name check reports it
        # Unknown tags always; a missing cache only when HF_HUB_OFFLINE=1 forbids the download
        # (online, timm's weights download when the model is built).
        check_pretrained_available(name, weights)
    elif not weights.endswith(CHECKPOINT_SUFFIXES + WEIGHT_FILE_SUFFIXES):
        raise choice_error(
            "backbone.weights",
            weights,
            [
                IMAGENET,
                f"{IMAGENET}:<timm tag>",
                "none",
                "/path/weights.safetensors|.pth|.bin",
                "/path/run.ckpt",
            ],
        )


def _check_store_or_root(c: dict[str, Any]) -> None:
    from arttl.data.store import incomplete_splits

    store = Path(str(c["store"]["dir"]))
    if not incomplete_splits(store):
        return
    ds = c["dataset"]
    root = ds.get("root")
    if _non_path_root(ds, root):
        return
    if root in (None, "") or not Path(str(root)).exists():
        raise ConfigError(
            f"dataset.root={str(root)!r} does not exist and store.dir={str(store)!r} is not "
            f"prepared; point dataset.root at the {ds.get('name')} images, e.g. "
            f"`dataset.root=/path/to/{ds.get('name')}`."
        )


def _non_path_root(ds: dict[str, Any], root: Any) -> bool:
    """A hub id (dataset=hf) is a valid root that is no folder: ask the reader."""
    from hydra.utils import get_method

    from arttl.data.build import is_non_path_root

    target = (ds.get("reader") or {}).get("_target_")
    try:
        reader = get_method(target) if target else None
    except Exception:  # an unknown reader is reported by its own check
        return False
    return reader is not None and is_non_path_root(reader, root)


# -- entry ---------------------------------------------------------------------------------------
def resolved(cfg: DictConfig) -> dict[str, Any]:
    """The config as plain containers; a missing (???) or broken value is a ConfigError."""
    try:
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)  # type: ignore[return-value]
    except MissingMandatoryValue as err:
        raise ConfigError(
            f"{err.full_key} is required (it is ??? in the config); set it, e.g. "
            f"`{err.full_key}=<value>` on the command line."
        ) from None
    except OmegaConfBaseException as err:
        raise ConfigError(f"{err.full_key}: {err.msg}") from None


def validate_config(cfg: DictConfig) -> None:
    """Raise one ConfigError listing every problem (key, value, fix), or return quietly."""
    c = resolved(cfg)
    problems = structure_problems(c, train_schema())
    problems += range_problems(c, skip={p.split("=")[0] for p in problems})
    if not problems:  # combinations assume the basic shape is right
        problems += combination_problems(c)
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        raise ConfigError(
            f"{len(problems)} config problems:\n" + "\n".join(f"  - {p}" for p in problems)
        )
