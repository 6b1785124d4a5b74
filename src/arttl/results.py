"""The schema of ``results.json`` (one per training run) and reading many of them into one table.

``results.json`` is the only thing ``report`` reads from a run, so it is versioned: a file from
another schema is refused with a message instead of silently producing a table with holes.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypedDict

import pandas as pd

from arttl.atomic import write_json_atomic
from arttl.errors import ConfigError

SCHEMA_VERSION = 1
RESULTS_FILE = "results.json"
METRIC_KEYS = ("top1", "top3", "top5", "macro_top1", "loss")
SAMPLE_KEYS = ("train", "val", "test")

# How a run's backbone was initialised, derived from ``weights`` (the paper's θ and θ̂).
INIT_IMAGENET = "imagenet"  # θ: ImageNet weights
INIT_ARTTL = "arttl"  # θ̂: an earlier arttl checkpoint (e.g. the Rijksmuseum-tuned network)
INIT_NONE = "none"  # random initialisation ("from scratch")
INIT_FILE = "file"  # any other weights file (.safetensors, .pth, ...)
INITS = (INIT_IMAGENET, INIT_ARTTL, INIT_NONE, INIT_FILE)


class Metrics(TypedDict):
    top1: float | None
    top3: float | None  # null when k >= num_classes
    top5: float | None
    macro_top1: float | None
    loss: float | None


class ResultsRecord(TypedDict):
    """One run. Extra keys are allowed (and kept); these are required."""

    schema_version: int
    experiment: str | None
    dataset: str
    challenge: str  # a multi-task run: its tasks joined by "+" (type+material+period)
    backbone: str
    mode: str
    weights: str | None
    num_classes: int  # a multi-task run: the sum over its tasks
    samples: dict[str, int]
    best_epoch: int | None
    val: Metrics  # a multi-task run: the mean over its tasks (each in ``tasks``)
    test: Metrics | None
    wall_seconds: float
    versions: dict[str, str]
    seed: int | None
    checkpoint: str | None
    history_csv: str | None  # metrics.csv, relative to the folder of results.json


REQUIRED_KEYS: tuple[str, ...] = tuple(ResultsRecord.__annotations__)

# Optional keys (schema 1 files without them still load). ``run_id`` is unique to one training
# run, so a copied run folder counts once; ``identity_hash`` is equal exactly for runs that may
# be averaged as seeds of one experiment (it hashes everything that changes the result except the
# seed); ``identity`` is the nested record it hashes (source, store, preprocessing, weights,
# mode, training...), which ``report`` uses to say how two runs differ.
OPTIONAL_KEYS = ("run_id", "identity_hash", "identity", "tasks", "stable_checkpoint", "evaluated")
# A multi-task run (one network, one head per task) keeps the top-level keys, its val/test then
# the mean over tasks, and adds ``tasks``: {task: {classes, samples, val, test}} (samples count
# the images with that task's label). A run of one task of a multi-task store has one task there.
# The top-level loss is the mean over the tasks whose loss weight (``task_weights``) is above 0,
# as early stopping and the best checkpoint monitor it; ``identity.tasks`` holds classes and weights.
TASK_KEYS = ("classes", "samples", "val", "test")
# What identifies a run in files written before ``identity_hash`` existed.
LEGACY_IDENTITY_KEYS = (
    "dataset",
    "challenge",
    "backbone",
    "mode",
    "weights",
    "num_classes",
    "samples",
)


def own_checkpoint(record: Mapping[str, Any]) -> str | None:
    """The run's own best checkpoint, which no later run replaces: ``checkpoint`` (files written
    before ``stable_checkpoint`` existed had the stable copy there and their own in
    ``run_checkpoint``)."""
    return record.get("run_checkpoint") or record.get("checkpoint") or None


class ResultsSchemaError(ConfigError):
    """A results.json that this version of arttl cannot read (older/newer schema, missing keys)."""


def _is_number_or_none(value: Any) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def validate_record(record: Any) -> list[str]:
    """Every problem with ``record`` (empty when it is a valid schema-1 record)."""
    if not isinstance(record, Mapping):
        return [f"expected a JSON object, got {type(record).__name__}"]
    problems = [f"missing key {key!r}" for key in REQUIRED_KEYS if key not in record]
    for key in ("dataset", "challenge", "backbone", "mode"):
        if key in record and not isinstance(record[key], str):
            problems.append(f"{key!r} must be a string, got {record[key]!r}")
    if "num_classes" in record and not (
        isinstance(record["num_classes"], int) and record["num_classes"] >= 1
    ):
        problems.append(f"'num_classes' must be a positive integer, got {record['num_classes']!r}")
    for split in ("val", "test"):
        if split in record and not (split == "test" and record[split] is None):
            problems += _metrics_problems(split, record[split])
    if "samples" in record and not isinstance(record["samples"], Mapping):
        problems.append("'samples' must be an object {train, val, test}")
    for key in ("run_id", "identity_hash"):
        value = record.get(key)
        if value is not None and not (isinstance(value, str) and value.strip()):
            problems.append(f"{key!r} must be a non-empty string or absent, got {value!r}")
    if record.get("identity") is not None and not isinstance(record["identity"], Mapping):
        problems.append(f"'identity' must be an object or absent, got {record['identity']!r}")
    return problems + _tasks_problems(record.get("tasks"))


def _metrics_problems(name: str, block: Any) -> list[str]:
    """Problems of one metrics object (``val``, ``test``, ``tasks.type.val``...)."""
    if not isinstance(block, Mapping):
        return [f"{name!r} must be an object with keys {', '.join(METRIC_KEYS)}"]
    problems = []
    for key in METRIC_KEYS:
        if key not in block:
            problems.append(f"missing key '{name}.{key}'")
        elif not _is_number_or_none(block[key]):
            problems.append(f"'{name}.{key}' must be a number or null, got {block[key]!r}")
    return problems


def _tasks_problems(tasks: Any) -> list[str]:
    """Problems of a multi-task run's ``tasks`` section (absent in single-task files).

    Checked like the top-level metrics, because ``collect_results`` turns each task into a row
    of its own: a task without ``val`` would be a row without a number.
    """
    if tasks is None:
        return []
    if not isinstance(tasks, Mapping) or not tasks:
        return [
            "'tasks' must be a non-empty object {task: {classes, samples, val, test}} or "
            f"absent, got {tasks!r}"
        ]
    problems: list[str] = []
    for task, section in tasks.items():
        where = f"tasks.{task}"
        if not isinstance(section, Mapping):
            problems.append(f"{where!r} must be an object with keys {', '.join(TASK_KEYS)}")
            continue
        if "val" not in section:
            problems.append(f"missing key '{where}.val'")
        for split in ("val", "test"):
            if section.get(split) is not None or (split == "val" and split in section):
                problems += _metrics_problems(f"{where}.{split}", section[split])
        classes = section.get("classes")
        if classes is not None and not (isinstance(classes, list) and classes):
            problems.append(f"'{where}.classes' must be a non-empty list, got {classes!r}")
        if section.get("samples") is not None and not isinstance(section["samples"], Mapping):
            problems.append(f"'{where}.samples' must be an object {{train, val, test}}")
    return problems


def write_results(path: str | Path, record: dict[str, Any]) -> Path:
    """Validate ``record`` and write it atomically as ``path``; returns the path.

    ``schema_version`` is added when absent. Invalid records raise ``ResultsSchemaError`` here,
    at the end of training, rather than later when ``report`` reads a sweep.
    """
    record = dict(record)
    version = record.setdefault("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise ResultsSchemaError(
            f"write_results: schema_version={version!r}, this arttl writes {SCHEMA_VERSION}."
        )
    problems = validate_record(record)
    if problems:
        raise ResultsSchemaError(f"write_results({str(path)!r}): " + "; ".join(problems))
    ordered = {"schema_version": SCHEMA_VERSION}
    ordered.update((k, v) for k, v in record.items() if k != "schema_version")
    return write_json_atomic(path, _json_safe(ordered))


def _json_safe(obj: Any) -> Any:
    """NaN/inf are not JSON; they mean "not measured", which the schema spells null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj


def load_results(path: str | Path) -> dict[str, Any]:
    """Read and validate one results.json; raise ``ResultsSchemaError`` naming the file and fix."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{str(path)!r}: results file not found.")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ResultsSchemaError(
            f"{str(path)!r} is not valid JSON ({err}); arttl writes results.json atomically, so "
            "this file was edited or written by something else. Re-run that training run or "
            "remove the file."
        ) from err
    if not isinstance(record, dict):
        raise ResultsSchemaError(f"{str(path)!r}: expected a JSON object, not a results list.")
    version = record.get("schema_version")
    if version is None:
        raise ResultsSchemaError(
            f"{str(path)!r} has no schema_version: it comes from an older arttl (before results "
            f"schema {SCHEMA_VERSION}) or another tool. Re-run that training run with this arttl, "
            "or move the file out of the folder."
        )
    if version != SCHEMA_VERSION:
        newer = isinstance(version, int) and version > SCHEMA_VERSION
        raise ResultsSchemaError(
            f"{str(path)!r} has schema_version={version!r}, this arttl reads {SCHEMA_VERSION}: "
            + (
                "it was written by a newer arttl; upgrade arttl (pip install -U arttl)."
                if newer
                else "re-run that training run with this arttl, or move the file out of the folder."
            )
        )
    problems = validate_record(record)
    if problems:
        raise ResultsSchemaError(
            f"{str(path)!r} is not a valid results file: {'; '.join(problems)}."
        )
    return record


def init_kind(weights: str | None) -> str:
    """θ / θ̂ / scratch / file, from the run's ``weights`` value (see ``INITS``)."""
    if weights is None or str(weights).strip().lower() in ("", "none", "null", "false"):
        return INIT_NONE
    weights = str(weights)
    if weights == "imagenet" or weights.startswith("imagenet:"):  # imagenet:<timm tag>
        return INIT_IMAGENET
    if weights.endswith(".ckpt"):
        return INIT_ARTTL
    return INIT_FILE


def new_run_id() -> str:
    """A fresh ``run_id`` (uuid4 hex): one per training run, kept when the run is resumed."""
    return uuid.uuid4().hex


def hash_identity(identity: Any) -> str:
    """16 hex digits of sha256 over ``identity`` as canonical JSON (sorted keys)."""
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def flatten_identity(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a.b.c": leaf}`` for a nested identity; lists (e.g. ``input_size``) stay leaves."""
    if not isinstance(tree, Mapping):
        return {prefix: tree} if prefix else {}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            out.update(flatten_identity(value, name))
        else:
            out[name] = value
    return out


def legacy_identity(record: Mapping[str, Any]) -> dict[str, Any]:
    """The identity of a record from before ``identity_hash``: the columns that told runs apart."""
    return {key: record.get(key) for key in LEGACY_IDENTITY_KEYS}


def record_identity(record: Mapping[str, Any]) -> tuple[str, dict[str, Any], bool]:
    """(identity_hash, identity, derived) of one record.

    ``identity`` falls back to ``legacy_identity`` when the file records none. ``derived`` is
    True when the file has no ``identity_hash``: the hash is then computed from
    ``identity`` when the file has one, else from ``legacy_identity`` (prefixed ``legacy-``), so
    runs of an older sweep that agree on those columns are still averaged as seeds.
    """
    identity = record.get("identity")
    given = record.get("identity_hash")
    if given:
        known = isinstance(identity, Mapping) and bool(identity)
        return str(given), dict(identity) if known else legacy_identity(record), False
    if isinstance(identity, Mapping) and identity:
        return hash_identity(identity), dict(identity), True
    fallback = legacy_identity(record)
    return "legacy-" + hash_identity(fallback), fallback, True


def find_results(folders: str | Path | Iterable[str | Path]) -> list[Path]:
    """Every results.json under ``folders`` (files are taken as they are), sorted, de-duplicated."""
    if isinstance(folders, str | Path):
        folders = [folders]
    folders = [Path(f) for f in folders]
    if not folders:
        raise ConfigError(
            "runs=[]: name at least one runs folder (e.g. a multirun/<name>/<time> folder)."
        )
    found: dict[Path, None] = {}
    for folder in folders:
        if folder.is_file():
            found[folder.resolve()] = None
        elif folder.is_dir():
            for p in sorted(folder.rglob(RESULTS_FILE)):
                if p.is_file():
                    found[p.resolve()] = None
        else:
            raise ConfigError(f"runs folder {str(folder)!r} does not exist.")
    if not found:
        raise ConfigError(
            f"no {RESULTS_FILE} under {', '.join(repr(str(f)) for f in folders)}: point at a "
            "training run's output folder (outputs/...) or a sweep's (multirun/...); runs that "
            "did not finish write no results.json."
        )
    return list(found)


IDENTITY_COLUMNS = (
    "experiment",
    "dataset",
    "challenge",
    "multitask",
    "backbone",
    "mode",
    "init",
    "weights",
    "seed",
    "run_id",
    "identity_hash",
)
DUPLICATES_ATTR = "duplicate_copies"  # runs.attrs key: results.json paths of ignored copies


def _identity_cell(value: Any) -> Any:
    """A flattened identity leaf as one table cell: lists and objects as compact JSON."""
    if isinstance(value, list | tuple | Mapping):
        return json.dumps(value, sort_keys=True, default=str)
    return value


def drop_duplicate_runs(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Count each ``run_id`` once: (runs without later copies, results paths of the copies).

    A copied run folder has the same ``run_id`` under two paths; the first path in sorted order
    is kept. The rows of one multi-task run (one per task) share their run_id and path, so they
    stay. Runs without a ``run_id`` (older files) are all kept.
    """
    if "run_id" not in runs or runs.empty:
        return runs, []
    in_order = runs.sort_values("results_path", kind="stable")
    with_id = in_order[in_order["run_id"].notna()]
    first_path = with_id.groupby("run_id", sort=False)["results_path"].transform("first")
    copies = with_id.index[with_id["results_path"] != first_path]
    dropped = list(dict.fromkeys(in_order.loc[copies, "results_path"].astype(str)))
    return runs.drop(index=copies).reset_index(drop=True), dropped


def task_records(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One single-task record per task of a ``tasks`` section; ``[record]`` when it has none.

    Each keeps the run's keys (identity, seed, wall_seconds...) and takes ``challenge`` (the task),
    ``num_classes``, ``samples`` and ``val``/``test`` from its task, so a task of a multi-task run
    lands in the table row of single-task runs of that task. ``multitask`` is the sorted task
    list joined by ``+`` when the network trained several tasks at once, else None (a run of one
    task of a multi-task store is a single-task network).
    """
    tasks = record.get("tasks")
    base = {k: v for k, v in record.items() if k != "tasks"}
    if not tasks:
        return [{**base, "multitask": None}]
    together = "+".join(sorted(map(str, tasks))) if len(tasks) > 1 else None
    out = []
    for task, section in tasks.items():
        classes = section.get("classes")
        out.append(
            {
                **base,
                **{k: v for k, v in section.items() if k != "classes"},
                "challenge": str(task),
                "num_classes": len(classes) if classes else section.get("num_classes"),
                "test": section.get("test"),
                "multitask": together,
            }
        )
    return out


def _load_all(paths: list[Path]) -> list[dict[str, Any]]:
    """Every record, or one ``ResultsSchemaError`` listing every file that cannot be read."""
    records: list[dict[str, Any]] = []
    errors: list[str] = []
    for path in paths:
        try:
            records.append(load_results(path))
        except ConfigError as err:
            errors.append(str(err))
    if errors:
        shown = "\n  ".join(errors[:10])
        more = f"\n  ... and {len(errors) - 10} more" if len(errors) > 10 else ""
        raise ResultsSchemaError(
            f"{len(errors)} of {len(paths)} results files cannot be read:\n  {shown}{more}"
        )
    return records


def _row(
    path: Path, record: dict[str, Any], identity_hash: str, identity: dict, derived: bool
) -> dict[str, Any]:
    """One table row (flattened columns plus identity and path columns) of one (task) record."""
    recorded = isinstance(record.get("identity"), Mapping) and bool(record["identity"])
    record = {**record, "test": record["test"] or dict.fromkeys(METRIC_KEYS)}
    record.pop("identity", None)
    flat = pd.json_normalize(record, sep="_").iloc[0].to_dict()
    flat.update(
        run_id=record.get("run_id"),
        identity_hash=identity_hash,
        identity_derived=derived,
        identity=json.dumps(identity, sort_keys=True, default=str),
    )
    if recorded:
        flat.update(
            {f"identity.{k}": _identity_cell(v) for k, v in flatten_identity(identity).items()}
        )
    run_dir = path.parent
    history = record.get("history_csv")
    history_path = (run_dir / history) if history else None
    flat.update(
        init=init_kind(record.get("weights")),
        run_dir=str(run_dir),
        results_path=str(path),
        history_path=str(history_path) if history_path and history_path.is_file() else None,
    )
    return flat


def collect_results(folders: str | Path | Iterable[str | Path]) -> pd.DataFrame:
    """One row per run and task, nested keys flattened with ``_`` (``test_top1``, ...).

    A single-task run is one row; a run with a ``tasks`` section is one row per task (see
    ``task_records``; its ``multitask`` column names the tasks trained together, None for a
    single-task network). Added columns: ``init`` (see ``init_kind``), ``run_dir`` (folder of the
    results.json), ``results_path`` and ``history_path`` (absolute path of metrics.csv, None when
    absent), ``run_id``, ``identity_hash`` and ``identity_derived`` (see ``record_identity``),
    ``identity`` (the identity as canonical JSON) and one ``identity.<a.b.c>`` column per leaf of
    a recorded identity. A run folder copied elsewhere under the same folders (same ``run_id``)
    is one run: the copies are dropped and their paths kept in ``runs.attrs["duplicate_copies"]``.
    Every unreadable file is listed in one ``ResultsSchemaError``: nothing is tabulated from a
    partly readable sweep unless the user removes or fixes the named files.
    """
    paths = find_results(folders)
    rows = []
    for path, record in zip(paths, _load_all(paths), strict=True):
        identity_hash, identity, derived = record_identity(record)  # one per run, not per task
        for one in task_records(record):
            rows.append(_row(path, one, identity_hash, identity, derived))
    df = pd.DataFrame(rows)
    for split in ("val", "test"):  # a run without a test split still gets the columns
        for key in METRIC_KEYS:
            col = f"{split}_{key}"
            if col not in df:
                df[col] = float("nan")
            df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    first = [c for c in IDENTITY_COLUMNS if c in df]
    df = df[first + [c for c in df.columns if c not in first]]
    df, dropped = drop_duplicate_runs(df)
    df.attrs[DUPLICATES_ATTR] = dropped
    return df
