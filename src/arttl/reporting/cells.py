"""Which runs may share a table cell, and what rows and columns are called when they may not.

A cell of Tables 2–3 is keyed by (dataset, challenge, backbone) × (mode, init). Runs in one cell
are averaged as seeds only when their ``identity_hash`` is equal (see ``arttl.results``). Runs
of different identities are separated, never averaged, and the labels say how they differ:

- one dataset name, several source folders → one dataset per folder: ``imagefolder (ahe64/train)``;
- one backbone, several input sizes → one row per size: ``resnet18 @32px``;
- one cell, several weight files → one column per file: ``file (a.safetensors)``;
- a task of a multi-task run (one network for several tasks) → its own column beside the
  single-task runs of that task: ``imagenet multi-task (material+period+type)``;
- anything else → a row ``resnet18 variant 2`` and a note naming the identity keys that differ.

``label_runs`` adds the columns ``dataset_label``, ``backbone_label`` and ``init_label`` that
the tables are keyed by, and returns the notes that explain every split.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pandas as pd

from arttl.results import (
    INIT_ARTTL,
    INIT_FILE,
    INIT_IMAGENET,
    INIT_NONE,
    flatten_identity,
    hash_identity,
)

MODE_LABELS = {
    "off_the_shelf": "Off-the-shelf",
    "fine_tune": "Fine-tuning",
    "partial": "Partial fine-tuning",
    "gradual": "Gradual unfreezing",
    "scratch": "From scratch",
}
INIT_LABELS = {INIT_IMAGENET: "θ", INIT_ARTTL: "θ̂", INIT_NONE: "random init", INIT_FILE: "file"}

LABEL_COLUMNS = ("dataset_label", "backbone_label", "init_label")
ROW_LABEL_COLUMNS = ("dataset_label", "challenge", "backbone_label")
CELL_COLUMNS = (*ROW_LABEL_COLUMNS, "mode", "init_label")
ROOT_KEY = "source.root"
SIZE_KEY = "preprocessing.input_size"
WEIGHTS_KEY = "weights.value"
DIGEST_KEY = "weights.digest"
MULTITASK_MARK = " multi-task ("  # init label of a multi-task column: ``imagenet multi-task (a+b)``
_ABSENT = object()
_SHOWN_KEYS = 6  # differing identity keys named in one note


def split_multitask(label: str) -> tuple[str, str]:
    """(init label without the multi-task part, the tasks trained together or '').

    ``imagenet multi-task (a+b)`` -> (``imagenet``, ``a+b``); ``file (x.pth)`` -> (it, '').
    """
    base, mark, rest = str(label).partition(MULTITASK_MARK)
    if not mark:
        return base, ""
    return base, rest[:-1] if rest.endswith(")") else rest


def with_multitask(label: str, tasks: str) -> str:
    """The init label of a multi-task run's column: ``imagenet multi-task (a+b)``."""
    return f"{label}{MULTITASK_MARK}{tasks})" if tasks else str(label)


def multitask_text(tasks: str) -> str:
    """``multi-task (material+period+type)``, '' for a single-task network."""
    return f"multi-task ({tasks})" if tasks else ""


def init_of_label(label: str) -> str:
    """The init kind (``imagenet``, ``arttl``, ...) of an init label such as ``file (a.pth)``."""
    return split_multitask(label)[0].split(" (", 1)[0]


def init_detail(label: str) -> str:
    """What tells this init column apart from others of its kind (``a.pth``), or ''.

    The multi-task part is not a detail of the initialisation (see ``split_multitask``).
    """
    rest = split_multitask(label)[0].partition(" (")[2]
    return rest[:-1] if rest.endswith(")") else rest


def init_text(label: str, names: dict[str, str] | None = None) -> str:
    """A readable init: ``θ``, ``θ̂ rijks/vgg19.ckpt``, ``file a.safetensors``, ``θ, multi-task
    (a+b)``."""
    kind, detail = init_of_label(label), init_detail(label)
    name = (names or INIT_LABELS).get(kind, kind)
    text = f"{name} {detail}" if detail else name
    tasks = split_multitask(label)[1]
    return f"{text}, {multitask_text(tasks)}" if tasks else text


def mode_text(mode: str) -> str:
    return MODE_LABELS.get(mode, str(mode).replace("_", " "))


def _canon(value: Any) -> str:
    return "<absent>" if value is _ABSENT else json.dumps(value, sort_keys=True, default=str)


def _short_value(value: Any, width: int = 40) -> str:
    if value is _ABSENT:
        return "absent"
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    text = repr(text) if isinstance(value, str) else text
    return text if len(text) <= width else text[: width - 1] + "…"


def short_paths(values: list[str]) -> dict[str, str]:
    """Each path by its last few parts, as few as keep them apart (``ahe64/train_val``); past
    two parts, the part that tells them apart and the file name (``study_met/…/best.ckpt``)."""
    parts = {v: [p for p in re.split(r"[\\/]+", v) if p] or [v] for v in values}
    for k in range(1, max(len(p) for p in parts.values()) + 1):
        short = {v: "/".join(p[-k:]) for v, p in parts.items()}
        if len(set(short.values())) == len(short):
            if k <= 2:
                return short
            brief = {v: f"{p[-k]}/…/{p[-1]}" if len(p) >= k else short[v] for v, p in parts.items()}
            return brief if len(set(brief.values())) == len(brief) else short
    return {v: v for v in values}


def size_text(value: Any) -> str:
    """``32px`` for a square ``[3, 32, 32]`` input, ``32x48px`` otherwise."""
    if isinstance(value, list | tuple) and len(value) >= 2:
        h, w = value[-2], value[-1]
        return f"{h}px" if h == w else f"{h}x{w}px"
    if isinstance(value, int):
        return f"{value}px"
    return str(value)


def _with_identity(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs not read by ``collect_results`` get an identity from their columns."""
    if {"identity_hash", "identity"} <= set(runs.columns):
        return runs
    runs = runs.copy()
    keys = [c for c in ("dataset", "challenge", "backbone", "mode", "init", "weights") if c in runs]
    identities = [
        {k: (None if pd.isna(v) else v) for k, v in zip(keys, row, strict=True)}
        for row in runs[keys].itertuples(index=False)
    ]
    runs["identity"] = [json.dumps(i, sort_keys=True, default=str) for i in identities]
    runs["identity_hash"] = ["legacy-" + hash_identity(i) for i in identities]
    return runs


def _first_paths(runs: pd.DataFrame) -> dict[str, str]:
    column = "results_path" if "results_path" in runs else None
    out: dict[str, str] = {}
    for i, h in enumerate(runs["identity_hash"]):
        path = str(runs[column].iloc[i]) if column else str(i)
        out[h] = min(out.get(h, path), path)
    return out


def label_runs(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """(runs with ``dataset_label``, ``backbone_label``, ``init_label``, notes on every split).

    After labelling, every cell (``CELL_COLUMNS``) holds runs of exactly one identity_hash.
    """
    runs = _with_identity(runs).reset_index(drop=True).copy()
    identities: dict[str, dict[str, Any]] = {}
    for h, text in zip(runs["identity_hash"], runs["identity"], strict=True):
        if h not in identities:
            identities[h] = flatten_identity(json.loads(text)) if isinstance(text, str) else {}
    notes: list[str] = []
    runs["dataset_label"] = runs["dataset"].astype(str)
    runs["backbone_label"] = runs["backbone"].astype(str)
    runs["init_label"] = runs["init"].astype(str)
    if runs.empty:
        return runs, notes
    _split_sources(runs, identities, notes)
    _split_sizes(runs, identities, notes)
    _split_weights(runs, identities, notes)
    _split_multitask(runs, notes)
    _split_variants(runs, identities, notes)
    mixed = runs.groupby(list(CELL_COLUMNS), dropna=False)["identity_hash"].nunique()
    assert (mixed <= 1).all(), f"cells still mix identities: {mixed[mixed > 1]}"
    return runs, notes


def _split_sources(runs: pd.DataFrame, ident: dict, notes: list[str]) -> None:
    for dataset, part in runs.groupby("dataset", sort=True):
        roots = {h: ident[h].get(ROOT_KEY) for h in part["identity_hash"].unique()}
        distinct = sorted({str(r) for r in roots.values() if r is not None})
        if len(distinct) < 2:
            continue
        short = short_paths(distinct)
        for h, root in roots.items():
            if root is not None:
                rows = (runs["dataset"] == dataset) & (runs["identity_hash"] == h)
                runs.loc[rows, "dataset_label"] = f"{dataset} ({short[str(root)]})"
        notes.append(
            f"Runs named dataset {dataset!r} come from {len(distinct)} different source folders; "
            "each folder is shown as its own dataset and never averaged with another: "
            + "; ".join(f"{dataset} ({short[r]}) = {r}" for r in distinct)
            + "."
        )


def _split_sizes(runs: pd.DataFrame, ident: dict, notes: list[str]) -> None:
    for (dataset, challenge, backbone), part in runs.groupby(
        ["dataset_label", "challenge", "backbone_label"], sort=True
    ):
        sizes = {h: ident[h].get(SIZE_KEY) for h in part["identity_hash"].unique()}
        distinct = {_canon(s): s for s in sizes.values() if s is not None}
        if len(distinct) < 2:
            continue
        for h, size in sizes.items():
            if size is not None:
                rows = part.index[part["identity_hash"] == h]
                runs.loc[rows, "backbone_label"] = f"{backbone} @{size_text(size)}"
        shown = ", ".join(size_text(s) for s in sorted(distinct.values(), key=_canon))
        notes.append(
            f"{dataset} / {challenge}: {backbone} ran at input sizes {shown}; each size has its "
            f"own row ({backbone} @<size>)."
        )


def _weights_of(runs: pd.DataFrame, h: str, ident: dict) -> tuple[str, str | None]:
    identity = ident[h]
    value = identity.get(WEIGHTS_KEY, identity.get("weights", _ABSENT))
    if value is _ABSENT or isinstance(value, dict):
        value = (
            runs.loc[runs["identity_hash"] == h, "weights"].iloc[0] if "weights" in runs else None
        )
    digest = identity.get(DIGEST_KEY)
    return str(value), None if digest is None else str(digest)


def _split_weights(runs: pd.DataFrame, ident: dict, notes: list[str]) -> None:
    for (dataset, challenge, backbone, mode, init), part in runs.groupby(
        list(CELL_COLUMNS), sort=True, dropna=False
    ):
        hashes = list(part["identity_hash"].unique())
        if len(hashes) < 2:
            continue
        weights = {h: _weights_of(runs, h, ident) for h in hashes}
        if len(set(weights.values())) < 2:
            continue
        values = sorted({v for v, _ in weights.values()})
        short = short_paths(values)
        labels = {}
        for h, (value, digest) in weights.items():
            digests = {d for v, d in weights.values() if v == value}
            detail = [short[value]] if len(values) > 1 else []
            if len(digests) > 1:
                detail.append(f"digest {str(digest)[:8]}")
            labels[h] = f"{init} ({' '.join(detail)})"
            runs.loc[part.index[part["identity_hash"] == h], "init_label"] = labels[h]
        notes.append(
            f"{dataset} / {challenge} / {backbone}, {mode_text(mode)}: runs started from "
            f"{len(set(weights.values()))} different weights; each has its own column: "
            + "; ".join(
                f"{init_text(labels[h])} = {value}" + (f" (digest {digest})" if digest else "")
                for h, (value, digest) in sorted(weights.items(), key=lambda kv: labels[kv[0]])
            )
            + "."
        )


def one_row_per_run(runs: pd.DataFrame) -> pd.DataFrame:
    """The first row of each training run: a multi-task run has one row per task."""
    key = next((c for c in ("results_path", "run_dir") if c in runs), None)
    return runs.drop_duplicates(key) if key else runs


def run_count(runs: pd.DataFrame) -> int:
    """Training runs behind ``runs``: a multi-task run counts once."""
    return len(one_row_per_run(runs))


def multitask_rows(runs: pd.DataFrame) -> pd.Series:
    """True on the rows that come from a network trained on several tasks at once."""
    if "multitask" not in runs:
        return pd.Series(False, index=runs.index)
    return runs["multitask"].notna() & (runs["multitask"].astype(str) != "")


def _split_multitask(runs: pd.DataFrame, notes: list[str]) -> None:
    """A task of a multi-task run gets its own column beside the single-task runs of that task.

    One network trained for several tasks is another experiment than one network per task, so
    the two are never averaged; the tasks go into the init label, as weight files do.
    """
    together = multitask_rows(runs)
    for tasks in sorted(set(runs.loc[together, "multitask"].astype(str))):
        rows = together & (runs["multitask"].astype(str) == tasks)
        runs.loc[rows, "init_label"] = [
            with_multitask(i, tasks) for i in runs.loc[rows, "init_label"]
        ]
        count = run_count(runs.loc[rows])
        trained = ", ".join(tasks.split("+"))
        notes.append(
            f"{count} multi-task run{'s' if count != 1 else ''} trained {trained} "
            "together (one network, one head per task): each task's row shows "
            f"{'it' if count == 1 else 'them'} in columns of their own, {multitask_text(tasks)}, "
            "never averaged with single-task runs of that task."
        )


def differing_keys(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Flattened identity keys whose values differ between ``a`` and ``b`` (absent counts)."""
    return [
        k for k in sorted(set(a) | set(b)) if _canon(a.get(k, _ABSENT)) != _canon(b.get(k, _ABSENT))
    ]


def describe_difference(a: dict[str, Any], b: dict[str, Any], hash_a: str, hash_b: str) -> str:
    """``mode.optimizer.lr (0.001 → 0.01), ...``: how identity ``b`` differs from ``a``."""
    legacy_a, legacy_b = hash_a.startswith("legacy-"), hash_b.startswith("legacy-")
    if legacy_a != legacy_b:
        old = "it" if legacy_b else "the other"
        return (
            f"what was recorded: {old} comes from an older results.json without an identity, so "
            "the two cannot be shown to be the same experiment"
        )
    keys = differing_keys(a, b)
    if not keys:
        return f"identity_hash only ({hash_a} vs {hash_b}; the recorded identities are equal)"
    shown = ", ".join(
        f"{k} ({_short_value(a.get(k, _ABSENT))} → {_short_value(b.get(k, _ABSENT))})"
        for k in keys[:_SHOWN_KEYS]
    )
    more = len(keys) - _SHOWN_KEYS
    return shown + (f" and {more} more key{'s' if more != 1 else ''}" if more > 0 else "")


def _split_variants(runs: pd.DataFrame, ident: dict, notes: list[str]) -> None:
    first_path = _first_paths(runs)
    for (dataset, challenge, backbone, mode, init), part in runs.groupby(
        list(CELL_COLUMNS), sort=True, dropna=False
    ):
        counts = part["identity_hash"].value_counts()
        if len(counts) < 2:
            continue
        order = sorted(counts.index, key=lambda h: (-counts[h], first_path[h]))
        for k, h in enumerate(order[1:], start=2):
            label = f"{backbone} variant {k}"
            runs.loc[part.index[part["identity_hash"] == h], "backbone_label"] = label
            notes.append(
                f"{dataset} / {challenge}, {mode_text(mode)} ({init_text(init)}): {label} "
                f"differs from variant 1 (the row {backbone}) in "
                f"{describe_difference(ident[order[0]], ident[h], order[0], h)}; "
                "they are not averaged."
            )
