"""Any table of image paths and labels (CSV/TSV), the escape hatch for unknown layouts."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from arttl.data.labels import clean_label
from arttl.data.sources._common import (
    SPLITS,
    FileIndex,
    abspath,
    make_table,
    require_dir,
    resolve_under,
)
from arttl.errors import ConfigError, choice_error

log = logging.getLogger(__name__)

#: The default challenge; any other challenge name is read from the column of that name.
CHALLENGES: tuple[str, ...] = ("label",)


def read_csv_table(
    root: str | os.PathLike[str],
    challenge: str = "label",
    csv_path: str | os.PathLike[str] = "labels.csv",
    path_column: str = "path",
    label_column: str | Mapping[str, str] | None = None,
    group_column: str | None = None,
    split_column: str | None = None,
    sep: str = ",",
    drop: Iterable[str] = (),
    path_format: str | None = None,
    query: str | None = None,
) -> pd.DataFrame:
    """Read a table with one image per row; relative paths are resolved against ``root``.

    The label column is ``label_column``, or the column named like ``challenge`` when it is
    None (so one table with columns ``style`` and ``genre`` serves two challenges); a mapping
    ``{task: column}`` names each task's column (``{type: Classification, material: Medium}``:
    several tasks from one museum export).
    ``group_column`` / ``split_column`` are optional (split values: train, val, test or
    empty). Rows whose file is missing are left out and counted in ``df.attrs["missing"]``.
    ``path_format`` builds each path from the row instead of ``path_column`` (a museum export
    with an ID column: ``"images/{Classification}/{ID}.jpg"``); ``query`` keeps the rows a
    pandas query selects (``"Source == 'Met Museum'"``: one museum's objects).
    """
    root = require_dir(root)
    table = resolve_under(root, csv_path, "csv_path", kind="file")
    df = pd.read_csv(table, dtype=str, keep_default_na=False, na_filter=False, sep=sep)
    df.columns = [str(c).strip() for c in df.columns]
    if isinstance(label_column, Mapping):
        label_column = _task_column(label_column, challenge, df, table)
    if label_column is None:
        label_column = _challenge_column(
            df, challenge, (path_column, group_column, split_column), table
        )
    if query:
        df = _select(df, query, table)
    if path_format:
        df = df.assign(**{path_column: _format_paths(df, path_format, table)})
    named = {"path_column": None if path_format else path_column, "label_column": label_column}
    _check_columns(
        df, named | {"group_column": group_column, "split_column": split_column}, table, sep
    )
    n = len(df)
    rows = zip(
        df[path_column].tolist(),
        df[label_column].tolist(),
        df[group_column].tolist() if group_column else [None] * n,
        df[split_column].tolist() if split_column else [None] * n,
        strict=True,
    )
    columns, counts = _kept_rows(rows, root, drop, table, split_column)
    unlabelled = counts.pop("unlabelled")
    if counts["missing"]:
        log.warning(  # per task when there are several: each reads its own label column
            "csv: %d row%s of %s with a %r label name no file on disk (left out)",
            counts["missing"],
            "" if counts["missing"] == 1 else "s",
            table,
            label_column,
        )
    if not columns[0]:
        raise ConfigError(
            f"csv_path={str(table)!r}: no row names an existing file with a label "
            f"(counts {counts}); relative paths are resolved against root={str(root)!r}"
        )
    attrs = {"missing": counts["missing"], "counts": counts, "unlabelled": unlabelled}
    return make_table(*columns, attrs=attrs)


def _check_columns(
    df: pd.DataFrame, named: dict[str, str | None], table: os.PathLike[str], sep: str
) -> None:
    for key, col in named.items():
        if col is not None and col not in df.columns:
            raise ConfigError(
                f"{key}={col!r} is not a column of csv_path={str(table)!r}; "
                f"columns found: {list(df.columns)} (check sep={sep!r} too)"
            )


def _challenge_column(
    df: pd.DataFrame, challenge: str, others: tuple[str | None, ...], table: os.PathLike[str]
) -> str:
    """The challenge names the label column when label_column is not given."""
    if challenge not in df.columns:
        choices = [c for c in df.columns if c not in others]
        raise choice_error(
            "challenge", challenge, choices,
            hint=f"the challenge names a label column of csv_path={str(table)!r}",
        )  # fmt: skip
    return challenge


def _task_column(
    columns: Mapping[str, str], challenge: str, df: pd.DataFrame, table: os.PathLike[str]
) -> str:
    """The column ``label_column`` maps this task to; an unknown task lists the mapped ones."""
    if challenge not in columns:
        raise choice_error(
            "challenge", challenge, list(columns),
            hint=f"dataset.reader.label_column maps these tasks to columns of {str(table)!r}",
        )  # fmt: skip
    return str(columns[challenge])


def _kept_rows(
    rows: Iterable[tuple[str, str, str | None, str | None]],
    root: Path,
    drop: Iterable[str],
    table: os.PathLike[str],
    split_column: str | None,
) -> tuple[tuple[list, list, list, list], dict[str, int]]:
    """(paths, labels, groups, splits) of the rows with a label and a file; counts of the rest."""
    index = FileIndex(root)
    counts = {"missing": 0, "missing_label": 0}
    paths: list[str] = []
    labels: list[str] = []
    groups: list[str | None] = []
    splits: list[str | None] = []
    unlabelled: list[str] = []
    for lineno, (raw, value, group, split) in enumerate(rows, 2):
        rel = str(raw).strip().replace("\\", "/")  # Windows-written tables
        label = clean_label(value, drop)
        found = os.path.isfile(rel) if os.path.isabs(rel) else bool(rel) and index.exists(rel)
        if label is None:
            counts["missing_label"] += 1
            if found:  # several tasks: an image with none of their labels is rejected by name
                unlabelled.append(abspath(root / rel))
            continue
        split = str(split).strip().lower() or None if split is not None else None
        if split is not None and split not in SPLITS:
            raise ConfigError(
                f"{table}:{lineno}: split_column={split_column!r} value {split!r} is not one of "
                f"{', '.join(SPLITS)} (or empty)"
            )
        if not found:
            counts["missing"] += 1
            continue
        paths.append(abspath(root / rel))
        labels.append(label)
        groups.append(clean_label(group, ()) if group is not None else None)
        splits.append(split)
    counts["unlabelled"] = unlabelled  # type: ignore[assignment]
    return (paths, labels, groups, splits), counts


def _select(df: pd.DataFrame, query: str, table: os.PathLike[str]) -> pd.DataFrame:
    try:
        out = df.query(query, engine="python")
    except Exception as err:  # pandas raises many kinds: name, syntax, type errors
        raise ConfigError(
            f"dataset.reader.query={query!r} cannot be evaluated on csv_path={str(table)!r}: "
            f"{type(err).__name__}: {err}. Columns: {list(df.columns)}; quote values, e.g. "
            "\"Source == 'Met Museum'\"; back-quote names with spaces: `Object Type` == 'vase'."
        ) from None
    if out.empty:
        raise ConfigError(
            f"dataset.reader.query={query!r} selects none of the {len(df)} rows of "
            f"csv_path={str(table)!r}."
        )
    return out


def _format_paths(df: pd.DataFrame, path_format: str, table: os.PathLike[str]) -> list[str]:
    try:
        return [path_format.format(**row) for row in df.to_dict("records")]
    except (KeyError, IndexError, ValueError) as err:
        raise ConfigError(
            f"dataset.reader.path_format={path_format!r} names {err} which is not a column of "
            f"csv_path={str(table)!r}; columns: {list(df.columns)}."
        ) from None
