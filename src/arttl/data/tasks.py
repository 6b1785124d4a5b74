"""Several labels per image (multi-task): read a source once per task and join the tables.

``dataset.challenge`` is one task name, or a list of them (``[material, type, artist]``). Each
task is read by the dataset's own reader, as a single-task store would read it (the same label
cleaning), then mapped by the task's optional ``dataset.reader.label_map`` entry, and the tables
are joined on the image path: an image keeps the labels it has, a missing one is masked.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd

from arttl.errors import ConfigError

FIRST_WORD = (
    "first_word"  # a label map that keeps the first word: "limestone with paint" -> limestone
)
TASK_PREFIX = "task:"  # the source table's column of one task's labels
_WORD = re.compile(r"[^\W\d_]+")


def task_list(challenge: str | Sequence[str]) -> list[str]:
    """``dataset.challenge`` as a list of task names (one name: a one-task list)."""
    return [challenge] if isinstance(challenge, str) else [str(t) for t in challenge]


def challenge_name(challenge: str | Sequence[str]) -> str:
    """How stores, folders and results name a challenge: ``material`` or ``material+type``."""
    return "+".join(task_list(challenge))


def is_multitask(challenge: str | Sequence[str]) -> bool:
    return not isinstance(challenge, str) and len(task_list(challenge)) > 1


def compile_label_map(task: str, spec: Any) -> Callable[[str], str | None]:
    """``first_word``, or an ordered ``{regex: class}`` table (first match wins, case-insensitive;
    a label no pattern matches is masked): free text such as a museum's ``Medium`` becomes classes."""
    key = f"dataset.reader.label_map.{task}"
    if spec == FIRST_WORD:
        return lambda label: m.group(0).lower() if (m := _WORD.search(label)) else None
    if not isinstance(spec, Mapping) or not spec:
        raise ConfigError(
            f"{key}={spec!r}: use {FIRST_WORD!r} or a mapping of regular expressions to class "
            "names, e.g. {'limestone|sandstone|granite': stone, 'bronze|copper|gold': metal}."
        )
    table = []
    for pattern, name in spec.items():
        try:
            table.append((re.compile(str(pattern), re.IGNORECASE), str(name)))
        except re.error as err:
            raise ConfigError(f"{key}: {pattern!r} is not a regular expression ({err}).") from None
    return lambda label: next((name for rx, name in table if rx.search(label)), None)


def apply_label_map(task: str, labels: pd.Series, spec: Any) -> pd.Series:
    """The task's labels after its map (None where no pattern matched); fewer than 2 classes left
    is an error that shows what the map made of the most frequent labels."""
    mapped = labels.map(compile_label_map(task, spec), na_action="ignore")  # missing stays missing
    classes = mapped.dropna().unique()
    if len(classes) < 2:
        top = labels.value_counts().head(8).index.tolist()
        raise ConfigError(
            f"dataset.reader.label_map.{task} leaves task {task!r} with {len(classes)} class(es) "
            f"({', '.join(map(str, classes)) or 'none'}); at least 2 are needed. Its most frequent "
            f"labels are {top}: add patterns that match them."
        )
    return mapped


def label_map_problem(tasks: Sequence[str], label_maps: Mapping[str, Any] | None) -> str | None:
    unknown = [t for t in (label_maps or {}) if t not in tasks]
    if not unknown:
        return None
    return (
        f"dataset.reader.label_map.{unknown[0]}: {unknown[0]!r} is not one of this run's tasks "
        f"(dataset.challenge={list(tasks)}); map a task you train, or remove the entry."
    )


def stratify_problem(tasks: Sequence[str], stratify_on: str | None) -> str | None:
    if stratify_on is None or stratify_on in tasks:
        return None
    return (
        f"store.stratify_on={stratify_on!r} is not one of dataset.challenge={list(tasks)}; "
        "name one of them (or null: the first)."
    )


def task_problems(
    challenge: Any,
    tasks: Sequence[str] | None,
    weights: Mapping[str, float] | None,
    stratify_on: str | None,
    label_maps: Mapping[str, Any] | None = None,
) -> list[str]:
    """The multi-task keys, up front: ``tasks`` a subset of ``dataset.challenge`` (each once),
    ``task_weights`` on trained tasks and not all 0, ``store.stratify_on`` and the label maps on
    tasks of the challenge (the last two are checked again where the store is read)."""
    known = task_list(challenge)
    trained, w = list(tasks or known), dict(weights or {})
    out = [
        f"tasks={list(tasks or [])}: {t!r} is not a task of dataset.challenge={known}; train a "
        "subset of them (tasks=null: all)."
        for t in [t for t in tasks or [] if t not in known][:1]
    ]
    if tasks and len(set(tasks)) < len(tasks):
        out.append(f"tasks={list(tasks)} names a task twice; list each task once.")
    out += [
        f"task_weights.{t}={w[t]}: {t!r} is not a trained task ({trained}); weight one of "
        "them or remove the entry."
        for t in [t for t in w if t not in trained][:1]
    ]
    if w and all(float(w.get(t, 1.0)) == 0 for t in trained):
        out.append(
            f"task_weights={w}: every trained task ({trained}) has weight 0, so nothing "
            "learns; give at least one a weight > 0."
        )
    both = (stratify_problem(known, stratify_on), label_map_problem(known, label_maps))
    return out + [p for p in both if p]


def read_tasks(
    reader: Callable[..., pd.DataFrame],
    root: Any,
    challenge: str | Sequence[str],
    label_maps: Mapping[str, Any] | None = None,
    stratify_on: str | None = None,
) -> pd.DataFrame:
    """The source table of every task: ``path, label, group, split`` as a one-task reader gives
    them (``label``: the ``stratify_on`` task's, first task by default; None where missing) plus
    ``task:<name>`` per task. Images without a label for any task (after the label maps) are
    left out and listed in ``attrs["rejected"]`` (path, reason); those the source gives no label
    at all are listed when the reader names them (``attrs["unlabelled"]``: the CSV reader)."""
    tasks = task_list(challenge)
    for problem in (label_map_problem(tasks, label_maps), stratify_problem(tasks, stratify_on)):
        if problem:
            raise ConfigError(problem)
    stratify = stratify_on or tasks[0]
    merged: pd.DataFrame | None = None
    unlabelled: set[str] | None = None  # images a reader lists without a label: per task
    for task in tasks:
        table = reader(root=root, challenge=task)
        listed = set(table.attrs.get("unlabelled", ()))
        unlabelled = listed if unlabelled is None else unlabelled & listed
        if label_maps and task in label_maps:
            table = table.assign(label=apply_label_map(task, table["label"], label_maps[task]))
        part = table.rename(columns={"label": TASK_PREFIX + task})
        merged = part if merged is None else _join(merged, part)
    assert merged is not None
    columns = [TASK_PREFIX + t for t in tasks]
    unlabelled_rows = merged[columns].isna().all(axis=1)
    reason = f"no label for any task ({', '.join(tasks)}) after dataset.reader.label_map"
    out = merged[~unlabelled_rows].copy()
    # the split stratifies on this column: images without the task's label are one more stratum
    out["label"] = out[TASK_PREFIX + stratify].where(
        out[TASK_PREFIX + stratify].notna(), f"(no {stratify})"
    )
    out = out.sort_values("path", kind="stable").reset_index(drop=True)
    none_given = sorted((unlabelled or set()) - set(merged["path"]))
    out.attrs["rejected"] = [(p, reason) for p in merged.loc[unlabelled_rows, "path"]] + [
        (p, f"no label for any task ({', '.join(tasks)}) in the source") for p in none_given
    ]
    out.attrs["tasks"] = tasks
    return out


def _join(left: pd.DataFrame, right: pd.DataFrame) -> pd.DataFrame:
    """Outer join on path; group and split come from whichever table has the image."""
    both = left.merge(right, on="path", how="outer", suffixes=("", "_r"))
    for col in ("group", "split"):
        if f"{col}_r" in both:
            both[col] = both[col].where(both[col].notna(), both[f"{col}_r"])
            both = both.drop(columns=f"{col}_r")
    return both.astype(object).where(both.notna(), None)


def task_labels(
    split: pd.DataFrame, tasks: Sequence[str], min_per_split: int, where: str
) -> tuple[pd.DataFrame, dict[str, list[str]], dict[str, list[str]]]:
    """Per task, keep the classes with ``min_per_split`` images in every split (others masked),
    then drop the images left with no label. Returns (rows kept, with an int column ``task:<t>``
    per task: -1 masked; classes per task; dropped classes per task). A task left with fewer
    than 2 classes, e.g. because one split has none of its labels, is an error."""
    classes: dict[str, list[str]] = {}
    dropped: dict[str, list[str]] = {}
    out = split.copy()
    for task in tasks:
        col = TASK_PREFIX + task
        counts = (
            out.dropna(subset=[col]).groupby([col, "split"]).size().unstack(fill_value=0)
            .reindex(columns=["train", "val", "test"], fill_value=0)
        )  # fmt: skip
        keep = sorted(counts.index[(counts >= min_per_split).all(axis=1)])
        if len(keep) < 2:
            per_split = counts.sum().to_dict()
            raise ConfigError(
                f"{where}: task {task!r} keeps {len(keep)} class(es) present in every split "
                f"(labelled images per split: {per_split}); at least 2 are needed. Its labels "
                "may be missing in one split: check the source column, the label map, or "
                "stratify on this task (store.stratify_on)."
            )
        classes[task] = keep
        dropped[task] = sorted(set(counts.index) - set(keep))
        index = {name: i for i, name in enumerate(keep)}
        out[col] = [index.get(v, -1) if v is not None else -1 for v in out[col]]
    cols = [TASK_PREFIX + t for t in tasks]
    out = out[(out[cols] >= 0).any(axis=1)].reset_index(drop=True)
    return out, classes, dropped
