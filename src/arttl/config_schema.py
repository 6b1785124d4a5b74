"""The train config's schema as code: every key arttl reads, with its type and range, in one place.

``check_train_config`` checks a composed config once, before any data is read. Unknown keys (with
close matches), wrong types and out-of-range values come from the pydantic models below; the
arguments of a ``_target_`` node are checked against its callable's signature (the callable is
their schema); what involves several keys, files or the machine is ``arttl.config_rules``. Every
problem is reported in one ConfigError, each naming the key, the value, what is expected and a fix.
"""

from __future__ import annotations

import difflib
import inspect
import numbers
import types
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types as at
from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
)
from pydantic.fields import FieldInfo

from arttl.data.store import IMAGE_FORMATS
from arttl.errors import ConfigError, choice_error

ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu", "hpu")
METRICS = tuple(
    f"{stage}/{m}"
    for stage in ("train", "val")
    for m in ("loss", "top1", "top3", "top5", "macro_top1")
)
SPLIT_BY: tuple[str, ...] = ("label", "group")  # values of store.split_by
HYDRA_KEYS = ("_target_", "_partial_", "_recursive_", "_convert_", "_args_")
UNDECLARED_FIX = "Remove it, or declare it in arttl/config_schema.py if arttl should read it."


# -- single-key checks that code outside the config also runs ------------------------------------
def check_fractions(fractions: Sequence[float]) -> list[float]:
    """``store.fractions``: the train/val/test shares (the schema and ``assign_splits`` use this)."""
    values = list(fractions)
    numeric = all(isinstance(x, numbers.Real) and not isinstance(x, bool) for x in values)
    if len(values) != 3 or not numeric or min(values) < 0 or abs(sum(values) - 1.0) > 1e-6:
        raise ConfigError(
            f"store.fractions={values!r} must be three numbers >= 0 that sum to 1; "
            "train/val/test, e.g. [0.8, 0.1, 0.1]."
        )
    return values


def _area_range(scale: list[float]) -> list[float]:
    if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
        raise ValueError("two numbers 0 < min <= max <= 1")
    return scale


# -- the schema ------------------------------------------------------------------------------------
class Node(BaseModel):
    """A config node whose keys are all declared here: any other key is a mistake."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Target(BaseModel):
    """A node Hydra instantiates; keys beyond the declared ones are checked against the
    ``_target_``'s signature (``target_problems``), so a new argument needs no declaration."""

    model_config = ConfigDict(extra="allow", strict=True)

    target: str = Field(alias="_target_")
    partial: bool = Field(False, alias="_partial_")
    recursive: bool = Field(True, alias="_recursive_")
    convert: str = Field("none", alias="_convert_")
    args: list[Any] = Field(default_factory=list, alias="_args_")


class Paths(Node):
    root_dir: str
    data_dir: str
    checkpoint_dir: str
    cache_dir: str


class Dataset(Node):
    name: str
    challenge: str | Annotated[list[str], Field(min_length=1)] = Field(
        description="a task name, or a list of them for one multi-task network, e.g. [type, material]"
    )
    root: str | None = Field(description="the folder (or hub id) of the collection")
    reader: Target


class StoreOptions(Node):
    """What decides a store's images and split; ``arttl.data.build.StoreSettings`` checks itself here."""

    shorter_side: int | None = Field(ge=16, description="null keeps the original size")
    quality: int = Field(ge=1, le=100, description="e.g. 90")
    fractions: Annotated[list[float], AfterValidator(check_fractions)] = Field(
        description="train/val/test, e.g. [0.8, 0.1, 0.1]"
    )
    min_per_split: int = Field(ge=0, description="e.g. 1")
    format: Literal[IMAGE_FORMATS] = "jpeg"
    seed: int = Field(42, description="the split's seed, e.g. 42")
    max_per_class: int | None = Field(
        None, ge=3, description="null keeps every image; e.g. 100 for a budgeted study"
    )
    split_by: Literal[SPLIT_BY] = Field(
        "label", description="group keeps each artist/group in one split"
    )
    stratify_on: str | None = Field(
        None, description="a task of dataset.challenge; null stratifies on the first"
    )


class Store(StoreOptions):
    dir: str
    check_source: bool = True


class Data(Node):
    batch_size: int = Field(ge=1, description="the paper used 32")
    feature_batch_size: int | None = Field(None, ge=1, description="null uses data.batch_size")
    num_workers: int = Field(ge=0, description="0 decodes in the main process")
    augment: bool
    scale: Annotated[list[float], AfterValidator(_area_range)] = Field(
        description="RandomResizedCrop's area range, e.g. [0.5, 1.0]"
    )
    hflip: float = Field(ge=0, le=1, description="0 turns flips off")
    color_jitter: float | None = Field(None, ge=0, description="null: off")
    gpu_decode: bool = False
    images: Target | None = None  # the datamodules a mode chooses (mode.datamodule)
    features: Target | None = None


class Backbone(Node):
    name: str
    weights: str | None
    image_size: int | None = Field(ge=16, description="null uses the backbone's own input size")


class Optimizer(Target):
    lr: float = Field(1e-3, gt=0, description="the paper used 1e-3")


class Mode(Node):
    name: str
    partial_fraction: float = 0.2
    unfreeze_at_epoch: int | None = Field(None, ge=0, description="the epoch the backbone joins")
    backbone_lr_ratio: float = Field(0.1, gt=0, description="e.g. 0.1")
    optimizer: Optimizer
    scheduler: Target | None = None
    datamodule: Target | None = None
    # what the mode adds to conf/callbacks (null drops one)
    callbacks: dict[str, Target | None] = Field(default_factory=dict)


class Trainer(Target):
    accelerator: Literal[ACCELERATORS] | None = "auto"
    max_epochs: int = Field(1000, ge=1, description="e.g. 100 with early stopping")
    num_nodes: int | None = Field(1, ge=1, description="1 for one machine")


class Callback(Target):
    monitor: Literal[METRICS] | None = None
    patience: int = Field(
        3, ge=0, description="epochs without lower val/loss before stopping; the paper used 7"
    )


Loggers = Annotated[
    Annotated[list[Target], Tag("list")] | Annotated[dict[str, Target | None], Tag("dict")],
    Discriminator(lambda v: "list" if isinstance(v, list) else "dict"),
]


class TrainConfig(Node):
    """``conf/train.yaml`` after composition (any preset, experiment and override)."""

    name: str
    experiment: str
    run_dir: str
    seed: int = Field(ge=0, description="e.g. seed=42")
    num_workers: int | None = Field(None, ge=0, description="null: one per core")
    channels_last: bool | None = None
    save_stable_checkpoint: bool = True
    resume: bool = False
    ckpt_path: str | None = None
    resume_allow: list[str] = Field(default_factory=list)
    source_experiment: str | None = None
    tasks: list[str] | None = Field(None, description="a subset of the store's tasks; null: all")
    task_weights: dict[str, Annotated[float, Field(ge=0)]] | None = Field(
        None,
        description="task -> weight of its loss, e.g. {type: 1.0, material: 0.5}; null: 1 each",
    )
    paths: Paths
    dataset: Dataset
    store: Store
    data: Data
    backbone: Backbone
    mode: Mode
    trainer: Trainer
    logger: Loggers | None = None  # a list or a dict by name; ~logger: none
    callbacks: dict[str, Callback | None] = Field(default_factory=dict)


# -- _target_ nodes: their callable is their schema ----------------------------------------------
def close_keys(name: str, known: Iterable[str]) -> list[str]:
    """The keys among ``known`` that ``name`` is likely a typo of, closest first (at most 3)."""
    return difflib.get_close_matches(name, sorted(known), n=3)


def unknown_key(key: str, name: str, known: Iterable[str], fix: str) -> str:
    """The message for a key nobody reads, with close matches among the keys that are read."""
    known = sorted(known)
    close = close_keys(name, known)
    if close:
        return f"{key}: unknown key; did you mean {', '.join(close)}? {fix}"
    return f"{key}: unknown key; known keys here: {', '.join(known)}. {fix}"


def target_problems(value: Any, key: str = "") -> list[str]:
    """Every ``_target_`` node under ``value``: importable, given only arguments it takes."""
    problems: list[str] = []
    if isinstance(value, dict):
        if isinstance(value.get("_target_"), str):
            problems += _signature_problems(key, value)
        for name, child in value.items():
            problems += target_problems(child, f"{key}.{name}" if key else str(name))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            problems += target_problems(child, f"{key}[{i}]")
    return problems


#: keys of a _target_ node that arttl reads itself rather than passing them to the callable
NOT_ARGUMENTS = {"dataset.reader": ("label_map",)}


def _signature_problems(key: str, node: dict[str, Any]) -> list[str]:
    target = node["_target_"]
    node = {k: v for k, v in node.items() if k not in NOT_ARGUMENTS.get(key, ())}
    try:
        obj = get_object(target)
    except Exception as err:  # ImportError, AttributeError, ... all mean "no such thing"
        return [f"{key}._target_={target!r} cannot be imported ({err}); fix the dotted path."]
    try:
        params = inspect.signature(obj).parameters
    except (TypeError, ValueError):
        return []
    if not params or any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return []
    names = [p for p in params if p not in ("self", "args", "kwargs")]
    return [
        unknown_key(f"{key}.{name}", name, names, f"{target} takes them.")
        for name in node
        if name not in HYDRA_KEYS and name not in params
    ]


# -- pydantic's errors as arttl's messages ---------------------------------------------------------
def _fields(model: type[BaseModel]) -> dict[str, FieldInfo]:
    return {f.alias or name: f for name, f in model.model_fields.items()}


def _model_in(tp: Any) -> type[BaseModel] | None:
    """The model a field's annotation holds (in a list, dict, union or Annotated), if any."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    return next((m for arg in get_args(tp) if (m := _model_in(arg)) is not None), None)


def _locate(
    loc: tuple[Any, ...], data: Any, model: type[BaseModel]
) -> tuple[list[Any], Any, FieldInfo | None, type[BaseModel] | None]:
    """The key path as the config spells it (union branch tags dropped), the value there, the
    declared field and the model that holds the last key."""
    parts: list[Any] = []
    node, holder, cls, field = data, None, model, None
    for i, part in enumerate(loc):
        inside = (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and part < len(node)
        )
        if not inside and i < len(loc) - 1:
            continue  # a tag naming the branch of a union
        if isinstance(part, int) and field is not None and _model_in(field.annotation) is None:
            break  # an item of a list of plain values: the whole list is the value
        parts.append(part)
        node = node[part] if inside else None
        holder = cls
        if cls is not None and isinstance(part, str) and part in _fields(cls):
            field = _fields(cls)[part]
            cls = _model_in(field.annotation)
        elif isinstance(part, str):  # a free name: a callback, a logger, a task, or undeclared
            value_type = _dict_value(field.annotation) if field is not None else None
            plain = value_type is not None and _model_in(value_type) is None
            field = FieldInfo.from_annotation(value_type) if plain else None
    return parts, node, field, holder


def _dict_value(tp: Any) -> Any:
    """The value type of a mapping field (``dict[str, X] | None`` -> X), else None."""
    if get_origin(tp) is dict:
        return get_args(tp)[1]
    return next((v for arg in get_args(tp) if (v := _dict_value(arg)) is not None), None)


def _key(parts: Sequence[Any]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


_TYPE_NAMES = {bool: "true/false", int: "an integer", float: "a number", str: "a string"}
_TYPE_NAMES |= {list: "a list", dict: "a mapping"}


def _type_name(tp: Any) -> str:
    origin = get_origin(tp) or tp
    if origin is Annotated:
        return _type_name(get_args(tp)[0])
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp) if a is not type(None))
    if origin is Literal:
        return "one of " + ", ".join(map(str, get_args(tp)))
    if origin is list and get_args(tp):
        return "a list of " + _type_name(get_args(tp)[0]).split(" ", 1)[-1] + "s"
    if isinstance(origin, type) and issubclass(origin, BaseModel):
        return "a mapping"
    return _TYPE_NAMES.get(origin, getattr(origin, "__name__", str(origin)))


def _expected(field: FieldInfo | None) -> str:
    """What a field accepts, in words, from its annotation and bounds (``null or an integer >= 16``)."""
    if field is None:
        return "a valid value"
    nullable = type(None) in get_args(field.annotation)
    text = ("null or " if nullable else "") + _type_name(field.annotation)
    bounds = {
        sign: getattr(m, attr)
        for m in field.metadata
        for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
        if isinstance(m, at.BaseMetadata) and hasattr(m, attr)
    }
    low = next(((s, bounds[s]) for s in (">=", ">") if s in bounds), None)
    high = next(((s, bounds[s]) for s in ("<=", "<") if s in bounds), None)
    if low and high:
        left, right = "[" if low[0] == ">=" else "(", "]" if high[0] == "<=" else ")"
        return f"{text} in {left}{low[1]}, {high[1]}{right}"
    bound = low or high
    return f"{text} {bound[0]} {bound[1]}" if bound else text


def _literal(tp: Any) -> tuple[Any, ...]:
    if get_origin(tp) is Literal:
        return get_args(tp)
    return next((c for arg in get_args(tp) if (c := _literal(arg))), ())


def _message(error: Mapping[str, Any], data: Any, model: type[BaseModel], prefix: str) -> str:
    parts, value, field, holder = _locate(tuple(error["loc"]), data, model)
    key = _key([prefix, *parts] if prefix else parts)
    hint = field.description if field is not None else None
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "extra_forbidden":
        known = _fields(holder) if holder is not None else {}
        return unknown_key(key, str(parts[-1]), known, UNDECLARED_FIX)
    if kind == "missing":
        return f"{key} is required; set it, e.g. `+{key}=<value>` on the command line."
    if kind == "literal_error" and field is not None:
        return str(choice_error(key, value, _literal(field.annotation), f"{hint}." if hint else ""))
    if kind == "value_error" and isinstance(ctx.get("error"), ConfigError):
        return str(ctx["error"])  # a shared check wrote the whole message
    want = str(ctx["error"]) if kind == "value_error" else _expected(field)
    return f"{key}={value!r} must be {want}" + (f"; {hint}." if hint else ".")


def validated(
    model: type[BaseModel], data: Any, prefix: str = ""
) -> tuple[dict[str, Any] | None, list[str]]:
    """``data`` with the schema's defaults filled in, or None and one message per bad key."""
    try:
        return _merged(model.model_validate(data).model_dump(by_alias=True), data), []
    except ValidationError as err:
        messages = [_message(e, data, model, prefix) for e in err.errors()]
        return None, list(dict.fromkeys(messages))  # a union's branches count once


def _merged(defaults: Any, given: Any) -> Any:
    """The values as given (``0``, not the model's ``0.0``) over the schema's defaults."""
    if isinstance(defaults, dict) and isinstance(given, dict):
        return {**defaults, **{k: _merged(defaults.get(k), v) for k, v in given.items()}}
    return given


# -- entry points ----------------------------------------------------------------------------------
# What to write after ``<key>=`` for a ``???`` value left unset; ``<value>`` for the others.
REQUIRED_VALUES = {"dataset.root": "<folder of the collection>"}


def missing_value(key: str) -> str:
    """The message for a ``???`` value left unset: which key, and how to set it."""
    return (
        f"{key} is required (it is ??? in the config): add "
        f"{key}={REQUIRED_VALUES.get(key, '<value>')}"
    )


def resolved(cfg: DictConfig) -> dict[str, Any]:
    """The config as plain containers; a missing (???) or broken value is a ConfigError."""
    try:
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)  # type: ignore[return-value]
    except MissingMandatoryValue as err:
        raise ConfigError(missing_value(err.full_key)) from None
    except OmegaConfBaseException as err:
        raise ConfigError(f"{err.full_key}: {err.msg}") from None


def raise_problems(problems: Sequence[str]) -> None:
    """One ConfigError for all ``problems`` (nothing when there are none)."""
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        raise ConfigError(
            f"{len(problems)} config problems:\n" + "\n".join(f"  - {p}" for p in problems)
        )


def check_train_config(cfg: DictConfig | Mapping[str, Any]) -> None:
    """Raise one ConfigError listing every problem of a composed train config, or return quietly.

    The cross-key rules run only once the schema holds: they read the values it promises.
    """
    from arttl.config_rules import rule_problems

    c = resolved(cfg) if isinstance(cfg, DictConfig) else dict(cfg)
    full, problems = validated(TrainConfig, c)
    problems += target_problems(c)
    raise_problems(problems or rule_problems(full or {}))


def check_store_settings(settings: Mapping[str, Any]) -> None:
    """``StoreSettings``' own check: the same types, ranges and messages as ``store.*`` up front."""
    from arttl.config_rules import check_raw_store

    data = {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}
    raise_problems(validated(StoreOptions, data, prefix="store")[1])
    check_raw_store(settings.get("format", "jpeg"), settings.get("shorter_side"))
