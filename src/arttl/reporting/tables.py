"""The paper's Tables 2 and 3 from a table of runs, rendered as CSV, Markdown and LaTeX.

Table 2: rows challenge × backbone, columns transfer mode (off-the-shelf and fine-tuning side by
side, other modes after them), ImageNet initialisation (θ). Table 3: the same rows on a
collection where some runs start from an art-tuned arttl checkpoint (θ̂), columns mode × init.
A task of a multi-task run has its own column beside the single-task ones of that mode and init
(``Fine-tuning, multi-task (material+period+type)``); ``multitask_table`` puts the two side by
side for the tasks that a multi-task run trained, with what each column cost in training time.

A cell holds the runs of one configuration (one ``identity_hash``; see ``reporting.cells``) and
shows the mean of a metric over them, in percent, ± the sample standard deviation (ddof=1) and
n, the number of runs (seeds): ``71.00 ± 1.41 (n=2)``; a single run is ``70.00 (n=1)``, never a
made-up ± 0. A combination without a run is NaN, which every renderer writes as an empty cell,
never as 0. ``differences`` pairs runs by seed: θ̂ − θ per mode, fine-tuning − off-the-shelf per
initialisation, in percentage points.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from arttl.reporting.cells import (
    CELL_COLUMNS,
    INIT_LABELS,
    LABEL_COLUMNS,
    MODE_LABELS,
    ROW_LABEL_COLUMNS,
    init_detail,
    init_of_label,
    init_text,
    label_runs,
    mode_text,
    multitask_rows,
    multitask_text,
    one_row_per_run,
    split_multitask,
)
from arttl.results import INIT_ARTTL, INIT_FILE, INIT_IMAGENET, INIT_NONE, INITS

__all__ = [
    "INIT_LABELS",
    "MODE_LABELS",
    "CellTable",
    "best_mask",
    "differences",
    "differences_csv_frame",
    "differences_markdown",
    "differences_rows",
    "multitask_csv_frame",
    "multitask_display_rows",
    "multitask_markdown",
    "multitask_table",
    "table2",
    "table3",
    "to_csv_frame",
    "to_latex",
    "to_markdown",
    "training_time",
]

ROW_KEYS = ("dataset", "challenge", "backbone")
COLUMN_KEYS = ("mode", "init")
PAPER_MODES = ("off_the_shelf", "fine_tune")
MODE_ORDER = ("off_the_shelf", "fine_tune", "partial", "gradual", "scratch")
INIT_LATEX = {
    INIT_IMAGENET: r"$\theta$",
    INIT_ARTTL: r"$\hat{\theta}$",
    INIT_NONE: "random init",
    INIT_FILE: "file",
}
ROW_LABELS = {"dataset": "Dataset", "challenge": "Challenge", "backbone": "Backbone"}
PLUS_MINUS = " ± "
PLUS_MINUS_LATEX = r" $\pm$ "
DIFFERENCE_COLUMNS = [
    "dataset",
    "challenge",
    "backbone",
    "kind",
    "comparison",
    "minuend",
    "subtrahend",
    "mean",
    "std",
    "n",
    "seeds",
    "unpaired",
]
THETA_HAT_MINUS_THETA = "theta_hat-theta"
FINE_TUNE_MINUS_OFF_THE_SHELF = "fine_tune-off_the_shelf"
MULTI_MINUS_SINGLE = "multitask-single_task"


@dataclass
class CellTable:
    """One table: per cell the mean, sample std (ddof=1, NaN for n < 2) and n, same shape.

    Rows are (dataset, challenge, backbone) labels, columns (mode, init) labels (see
    ``reporting.cells``); values are in percent except for losses. NaN mean = not run.
    """

    mean: pd.DataFrame
    std: pd.DataFrame
    n: pd.DataFrame

    @property
    def empty(self) -> bool:
        return self.mean.empty

    @property
    def index(self) -> pd.Index:
        return self.mean.index

    @property
    def columns(self) -> pd.Index:
        return self.mean.columns


def _mode_rank(mode: str) -> tuple[int, str]:
    return (MODE_ORDER.index(mode) if mode in MODE_ORDER else len(MODE_ORDER), mode)


def _init_rank(label: str) -> tuple[int, str]:
    kind = init_of_label(label)
    return (INITS.index(kind) if kind in INITS else len(INITS), label)


def _scale(metric: str) -> float:
    return 1.0 if metric.endswith("loss") else 100.0


def check_metric(runs: pd.DataFrame, metric: str) -> None:
    from arttl.errors import choice_error

    if metric not in runs:
        choices = [c for c in runs.columns if c.startswith(("test_", "val_"))]
        raise choice_error("metric", metric, choices)


def ensure_labels(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with the cell labels of ``reporting.cells.label_runs`` (added when missing)."""
    if set(LABEL_COLUMNS) <= set(runs.columns):
        return runs
    return label_runs(runs)[0]


def _row_index(runs: pd.DataFrame) -> pd.MultiIndex:
    """Every row label; a plain backbone that ran on one challenge of a dataset but not on
    another shows there as an empty row instead of vanishing."""
    rows = []
    for dataset, part in runs.groupby("dataset_label", sort=True):
        backbones = set(part["backbone"])
        for challenge in sorted(part["challenge"].unique()):
            here = part[part["challenge"] == challenge]
            labels = set(zip(here["backbone"], here["backbone_label"], strict=True))
            labels |= {(b, b) for b in backbones - set(here["backbone"])}
            rows += [(dataset, challenge, label) for _, label in sorted(labels)]
    return pd.MultiIndex.from_tuples(rows, names=list(ROW_KEYS))


def _pivot(runs: pd.DataFrame, metric: str, columns: list[tuple[str, str]]) -> CellTable:
    """Mean, std and n of ``metric`` (in %) per row label × (mode, init label)."""
    scale = _scale(metric)
    index = _row_index(runs) if not runs.empty else pd.MultiIndex.from_tuples([], names=ROW_KEYS)
    col_index = pd.MultiIndex.from_tuples(columns, names=list(COLUMN_KEYS))
    frames = {k: pd.DataFrame(np.nan, index=index, columns=col_index) for k in ("mean", "std", "n")}
    valid = runs[runs[metric].notna()]
    stats = valid.groupby(list(CELL_COLUMNS))[metric].agg(["mean", "std", "count"])
    for (dataset, challenge, backbone, mode, init), row in stats.iterrows():
        if (mode, init) in col_index and (dataset, challenge, backbone) in index:
            where = ((dataset, challenge, backbone), (mode, init))
            frames["mean"].loc[where] = row["mean"] * scale
            frames["n"].loc[where] = row["count"]
            if row["count"] >= 2:
                frames["std"].loc[where] = row["std"] * scale
    return CellTable(**frames)


def _with_paper_columns(
    present: set[tuple[str, str]], modes: list[str], kinds: tuple[str, ...]
) -> set[tuple[str, str]]:
    """``present`` plus a plain (mode, kind) column where no single-task column of that kind
    exists yet (a multi-task column does not stand in for the paper's single-task one)."""
    single = {(m, i) for m, i in present if not split_multitask(i)[1]}
    out = set(present)
    for mode in modes:
        for kind in kinds:
            if not any(m == mode and init_of_label(i) == kind for m, i in single):
                out.add((mode, kind))
    return out


def table2(runs: pd.DataFrame, metric: str = "test_top1") -> CellTable:
    """Paper Table 2: challenge × backbone rows, (mode, init) columns, every run except θ̂ ones.

    Columns: off-the-shelf and fine-tuning with θ first (always, empty if not run), then the
    other modes; runs from another initialisation (random, a weights file) get their own column.
    """
    check_metric(runs, metric)
    runs = ensure_labels(runs)
    runs = runs[runs["init"] != INIT_ARTTL]
    if runs.empty:
        return _pivot(runs, metric, [])
    present = set(zip(runs["mode"], runs["init_label"], strict=True))
    columns = _with_paper_columns(present, list(PAPER_MODES), (INIT_IMAGENET,))
    theta = [(m, INIT_IMAGENET) for m in PAPER_MODES if (m, INIT_IMAGENET) in columns]
    others = sorted(
        columns - set(theta),
        key=lambda c: (init_of_label(c[1]) != INIT_IMAGENET, _mode_rank(c[0]), _init_rank(c[1])),
    )
    return _pivot(runs, metric, theta + others)


def table3(runs: pd.DataFrame, metric: str = "test_top1") -> CellTable:
    """Paper Table 3: on each dataset with θ̂ runs, θ versus θ̂ side by side for every mode.

    Off-the-shelf and fine-tuning always get both a θ and a θ̂ column; other modes and inits
    appear when present. Empty (no rows) when no run started from an arttl checkpoint.
    """
    check_metric(runs, metric)
    runs = ensure_labels(runs)
    datasets = set(runs.loc[runs["init"] == INIT_ARTTL, "dataset_label"])
    runs = runs[runs["dataset_label"].isin(datasets)]
    if runs.empty:
        return _pivot(runs, metric, [])
    modes = sorted(set(runs["mode"]) | set(PAPER_MODES), key=_mode_rank)
    present = set(zip(runs["mode"], runs["init_label"], strict=True))
    # scratch has no initialisation to compare
    compared = [m for m in modes if m != "scratch"]
    columns = _with_paper_columns(present, compared, (INIT_IMAGENET, INIT_ARTTL))
    ordered = []
    for mode in modes:
        ordered += sorted(((m, i) for m, i in columns if m == mode), key=lambda c: _init_rank(c[1]))
    return _pivot(runs, metric, ordered)


def best_mask(table: CellTable, higher_is_better: bool = True) -> pd.DataFrame:
    """True on the best cell(s) of each challenge (all backbones and columns), by the mean."""
    mask = pd.DataFrame(False, index=table.index, columns=table.columns)
    if table.empty:
        return mask
    for _, block in table.mean.groupby(level=["dataset", "challenge"], sort=False):
        values = block.to_numpy(dtype=float)
        if np.isnan(values).all():
            continue
        best = np.nanmax(values) if higher_is_better else np.nanmin(values)
        mask.loc[block.index] = np.isclose(values, best, rtol=0, atol=1e-9)
    return mask


def column_labels(
    table: CellTable, latex: bool = False, show_init: bool = False, single_task: bool = False
) -> list[str]:
    """One header per column: the mode, plus the init where it is not plain ImageNet (θ).

    ``show_init`` names θ too (Table 3, where θ and θ̂ stand side by side). A column that tells
    weight files apart names the file: ``Fine-tuning (file a.safetensors)``; a multi-task one
    its tasks: ``Fine-tuning, multi-task (a+b)``. ``single_task`` marks the others
    ``, single-task`` (the multi-task table, where both kinds stand side by side).
    """
    out = []
    for mode, init in table.columns:
        base, tasks = split_multitask(init)
        label = mode_text(mode)
        kind, detail = init_of_label(base), init_detail(base)
        if latex:
            label = latex_escape(label)
        plain = (kind == INIT_IMAGENET or (mode == "scratch" and kind == INIT_NONE)) and not detail
        if show_init or not plain:
            label += f" ({_init_latex(base) if latex else init_text(base)})"
        if tasks or single_task:
            task_text = multitask_text(tasks) or "single-task"
            label += f", {latex_escape(task_text) if latex else task_text}"
        out.append(label)
    return out


def _init_latex(label: str) -> str:
    base, tasks = split_multitask(label)
    kind, detail = init_of_label(base), init_detail(base)
    name = INIT_LATEX.get(kind, latex_escape(kind))
    text = f"{name} {latex_escape(detail)}" if detail else name
    return f"{text}, {latex_escape(multitask_text(tasks))}" if tasks else text


def _isnan(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _fmt(value: float, decimals: int) -> str:
    return "" if _isnan(value) else f"{value:.{decimals}f}"


def cell_text(
    mean: float,
    std: float,
    n: float,
    decimals: int = 2,
    bold: Callable[[str], str] = str,
    plus_minus: str = PLUS_MINUS,
    signed: bool = False,
) -> str:
    """``71.00 ± 1.41 (n=2)``; ``70.00 (n=1)`` (no ± for one run); '' when not run.

    ``bold`` wraps the mean only (the best cell is chosen by the mean).
    """
    if _isnan(mean) or _isnan(n) or n < 1:
        return ""
    text = bold(f"{mean:+.{decimals}f}" if signed else f"{mean:.{decimals}f}")
    if n >= 2 and not _isnan(std):
        text += f"{plus_minus}{std:.{decimals}f}"
    return text + f" (n={int(n)})"


def _sparse_rows(index: pd.MultiIndex) -> list[list[str]]:
    """Row labels with repeats blanked: dataset and challenge once per block, as in the paper."""
    rows, previous = [], (None,) * index.nlevels
    for key in index:
        shown, same_so_far = [], True
        for level, value in enumerate(key):
            same_so_far = same_so_far and previous[level] == value and level < index.nlevels - 1
            shown.append("" if same_so_far else str(value))
        rows.append(shown)
        previous = key
    return rows


def _cells(
    table: CellTable,
    decimals: int,
    higher_is_better: bool,
    bold: Callable[[str], str],
    plus_minus: str,
) -> list[list[str]]:
    mask = best_mask(table, higher_is_better).to_numpy()
    mean, std, n = (t.to_numpy(dtype=float) for t in (table.mean, table.std, table.n))
    return [
        [
            cell_text(mean[r, c], std[r, c], n[r, c], decimals, bold if mask[r, c] else str,
                      plus_minus)
            for c in range(mean.shape[1])
        ]
        for r in range(mean.shape[0])
    ]  # fmt: skip


def display_rows(
    table: CellTable,
    decimals: int = 2,
    higher_is_better: bool = True,
    show_init: bool = False,
    bold: Callable[[str], str] = "**{}**".format,
    escape: Callable[[str], str] = str,
    single_task: bool = False,
) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of strings: row labels once per block, best per challenge through ``bold``.

    Shared by the Markdown file and the terminal table so both show the same cells.
    """
    labels = column_labels(table, False, show_init, single_task)
    header = [ROW_LABELS[n] for n in table.index.names] + labels
    cells = _cells(table, decimals, higher_is_better, bold, PLUS_MINUS)
    labels = [[escape(x) for x in row] for row in _sparse_rows(table.index)]
    return [escape(h) for h in header], [a + b for a, b in zip(labels, cells, strict=True)]


def _pipe_table(
    header: list[str], rows: list[list[str]], n_left: int, align: list[str] | None = None
) -> str:
    align = align or ["left"] * n_left + ["right"] * (len(header) - n_left)
    frame = pd.DataFrame(rows, columns=header)
    return (
        frame.to_markdown(index=False, tablefmt="pipe", colalign=align, disable_numparse=True)
        + "\n"
    )


def to_markdown(
    table: CellTable, decimals: int = 2, higher_is_better: bool = True, show_init: bool = False
) -> str:
    """GitHub pipe table (pandas + tabulate), best per challenge in bold, missing runs empty."""
    if table.empty:
        return "_no runs for this table_\n"
    header, rows = display_rows(table, decimals, higher_is_better, show_init)
    return _pipe_table(header, rows, table.index.nlevels)


def latex_escape(text: str) -> str:
    for char, repl in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$")):
        text = text.replace(char, repl)
    for char in "#_{}":
        text = text.replace(char, "\\" + char)
    return text.replace("~", r"\textasciitilde{}").replace("^", r"\textasciicircum{}")


def to_latex(
    table: CellTable,
    decimals: int = 2,
    higher_is_better: bool = True,
    caption: str | None = None,
    two_level_header: bool = False,
) -> str:
    """booktabs tabular via pandas' Styler; best mean per challenge in \\textbf, missing runs empty.

    Cells are ``71.00 $\\pm$ 1.41 (n=2)``, or ``70.00 (n=1)`` for a single run.
    ``two_level_header`` puts modes on one header row and θ/θ̂ under them (Table 3).
    ``caption`` is LaTeX already (escape plain text with ``latex_escape``).
    """
    if table.empty:
        return "% no runs for this table\n"
    bold = r"\textbf{{{}}}".format
    shown = pd.DataFrame(
        _cells(table, decimals, higher_is_better, bold, PLUS_MINUS_LATEX),
        index=table.index,
        dtype=object,
    )
    if two_level_header:
        shown.columns = pd.MultiIndex.from_tuples(
            [(latex_escape(mode_text(m)), _init_latex(i)) for m, i in table.columns]
        )
    else:
        shown.columns = column_labels(table, latex=True)
    shown.index = shown.index.set_names([ROW_LABELS[n] for n in table.index.names])
    styler = shown.style.format_index(escape="latex", axis=0)
    latex = styler.to_latex(
        hrules=True,
        multirow_align="naive",  # labels once per block, without needing the multirow package
        multicol_align="c",
        caption=caption,
        position_float="centering" if caption else None,
    )
    return "% needs \\usepackage{booktabs}\n" + latex


def to_csv_frame(table: CellTable, decimals: int = 2) -> pd.DataFrame:
    """Flat columns ``<mode>/<init>`` (mean), ``<mode>/<init>_std`` and ``<mode>/<init>_n``.

    NaN stays NaN (an empty CSV field): not run, or no std for a single run.
    """
    out = table.index.to_frame(index=False)
    for column in table.columns:
        name = "/".join(column)
        out[name] = table.mean[column].round(decimals).to_numpy()
        out[f"{name}_std"] = table.std[column].round(decimals).to_numpy()
        counts = table.n[column].to_numpy(dtype=float)
        out[f"{name}_n"] = pd.array(
            [None if np.isnan(c) else round(c) for c in counts], dtype="Int64"
        )
    return out


def rich_rows(
    table: CellTable, decimals: int = 2, higher_is_better: bool = True, show_init: bool = False
) -> tuple[list[str], list[list[str]]]:
    """(header, rows) for a rich.Table, best per challenge marked up in bold."""
    from rich.markup import escape

    return display_rows(
        table, decimals, higher_is_better, show_init, "[bold]{}[/bold]".format, escape
    )


# Multi-task versus single-task -----------------------------------------------------------------

TIME_LABEL = "Total training time"
TIME_LABEL_CSV = "total training time (s)"  # the CSV's last row: seconds in the mean columns


def multitask_table(runs: pd.DataFrame, metric: str = "test_top1") -> CellTable:
    """Each task of a multi-task run beside the single-task runs of that task.

    Rows: the (dataset, task, backbone) that some multi-task run trained; columns: for each
    (mode, init) with a multi-task run, the single-task column (empty if not run) and the
    multi-task one(s), so a row reads what sharing one network cost or gained on that task.
    Empty (no rows) when no run trained several tasks.
    """
    check_metric(runs, metric)
    runs = ensure_labels(runs)
    together = multitask_rows(runs)
    if not together.any():
        return _pivot(runs.iloc[:0], metric, [])
    shared = runs[together]
    pairs = zip(shared["mode"], shared["init_label"], strict=True)
    compared = {(m, split_multitask(i)[0]) for m, i in pairs}
    keys = ["dataset_label", "challenge", "backbone"]
    trained = set(shared[keys].itertuples(index=False, name=None))
    runs = runs[[k in trained for k in runs[keys].itertuples(index=False, name=None)]]
    present = set(zip(runs["mode"], runs["init_label"], strict=True)) | compared
    columns = sorted(
        ((m, i) for m, i in present if (m, split_multitask(i)[0]) in compared),
        key=lambda c: (_mode_rank(c[0]), _init_rank(split_multitask(c[1])[0]), c[1]),
    )
    return _pivot(runs, metric, columns)


def training_time(runs: pd.DataFrame, table: CellTable) -> pd.DataFrame:
    """Total ``wall_seconds`` (``seconds``) and number of ``runs`` behind each column of ``table``.

    What each column cost: a multi-task run has one row per task but trained once, so it counts
    once; a single-task column counts a run per task and seed. Index: the table's columns.
    """
    runs = ensure_labels(runs)
    rows = set(table.index)
    labels = zip(runs["dataset_label"], runs["challenge"], runs["backbone_label"], strict=True)
    runs = runs[[label in rows for label in labels]]
    seconds, counts = [], []
    for mode, init in table.columns:
        part = one_row_per_run(runs[(runs["mode"] == mode) & (runs["init_label"] == init)])
        wall = pd.to_numeric(part["wall_seconds"], errors="coerce")
        seconds.append(float(wall.sum()) if wall.notna().any() else np.nan)
        counts.append(len(part))
    return pd.DataFrame({"seconds": seconds, "runs": counts}, index=table.columns)


def duration_text(seconds: float) -> str:
    """``45 s``, ``12.5 min``, ``3.20 h``: a training time readable at a glance."""
    if _isnan(seconds):
        return ""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.2f} h"


def multitask_display_rows(
    table: CellTable,
    time: pd.DataFrame,
    decimals: int = 2,
    higher_is_better: bool = True,
    bold: Callable[[str], str] = "**{}**".format,
    escape: Callable[[str], str] = str,
) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the multi-task table, a last row with each column's training time."""
    header, rows = display_rows(
        table, decimals, higher_is_better, False, bold, escape, single_task=True
    )
    cost = [
        f"{duration_text(s)} ({n} run{'' if n == 1 else 's'})" if n else ""
        for s, n in zip(time["seconds"], time["runs"], strict=True)
    ]
    rows.append([escape(TIME_LABEL)] + [""] * (table.index.nlevels - 1) + cost)
    return header, rows


def multitask_markdown(
    table: CellTable, time: pd.DataFrame, decimals: int = 2, higher_is_better: bool = True
) -> str:
    """The multi-task table as a pipe table, like ``to_markdown`` plus the training-time row."""
    if table.empty:
        return "_no multi-task runs_\n"
    header, rows = multitask_display_rows(table, time, decimals, higher_is_better)
    return _pipe_table(header, rows, table.index.nlevels)


def multitask_csv_frame(table: CellTable, time: pd.DataFrame, decimals: int = 2) -> pd.DataFrame:
    """``to_csv_frame`` plus a last row ``total training time (s)``: seconds, runs in ``_n``."""
    out = to_csv_frame(table, decimals)
    last = {name: "" for name in table.index.names}
    last[table.index.names[0]] = TIME_LABEL_CSV
    for column, seconds, count in zip(table.columns, time["seconds"], time["runs"], strict=True):
        name = "/".join(column)
        last.update({name: round(seconds, 1), f"{name}_std": np.nan, f"{name}_n": count})
    tail = pd.DataFrame([last], columns=out.columns)
    for name in out.columns:
        if name.endswith("_n"):
            tail[name] = tail[name].astype("Int64")
    return pd.concat([out, tail], ignore_index=True)


# Paired differences -----------------------------------------------------------------------------


def _seed_text(seed: object) -> str:
    if isinstance(seed, float) and seed.is_integer():
        return str(int(seed))
    return str(seed)


def _by_seed(cell: pd.DataFrame, metric: str, scale: float) -> tuple[dict[str, float], int]:
    """({seed: mean metric over that seed's runs}, runs without a seed) of one cell."""
    valid = cell[cell[metric].notna()]
    has_seed = valid["seed"].notna() if "seed" in valid else pd.Series(False, index=valid.index)
    seeded = valid[has_seed]
    values = seeded.groupby(seeded["seed"].map(_seed_text))[metric].mean() * scale
    return {str(k): float(v) for k, v in values.items()}, int((~has_seed).sum())


def _seed_sort(seed: str) -> tuple[int, float | str]:
    try:
        return (0, float(seed))
    except ValueError:
        return (1, seed)


def _pair(
    hi: tuple[dict[str, float], int], lo: tuple[dict[str, float], int], hi_name: str, lo_name: str
) -> dict[str, object]:
    (a, a_unseeded), (b, b_unseeded) = hi, lo
    common = sorted(set(a) & set(b), key=_seed_sort)
    diffs = np.array([a[s] - b[s] for s in common], dtype=float)
    unpaired = []
    for name, side, other, unseeded in ((hi_name, a, b, a_unseeded), (lo_name, b, a, b_unseeded)):
        only = sorted(set(side) - set(other), key=_seed_sort)
        if only:
            unpaired.append(f"{name} only: seed{'s' if len(only) > 1 else ''} {', '.join(only)}")
        if unseeded:
            unpaired.append(f"{name}: {unseeded} run{'s' if unseeded > 1 else ''} without a seed")
    return {
        "mean": float(diffs.mean()) if len(diffs) else np.nan,
        "std": float(diffs.std(ddof=1)) if len(diffs) >= 2 else np.nan,
        "n": len(diffs),
        "seeds": ", ".join(common),
        "unpaired": "; ".join(unpaired),
    }


def _same_tasks(a: str, b: str) -> bool:
    """Both single-task, or both multi-task on the same tasks: only those two are paired."""
    return split_multitask(a)[1] == split_multitask(b)[1]


def differences(runs: pd.DataFrame, metric: str = "test_top1") -> pd.DataFrame:
    """Paired differences per row, in percentage points (raw units for a loss).

    For each row and mode with θ and θ̂ runs: θ̂ − θ; for each row, mode and init with
    multi-task and single-task runs scored on the same store's test images: multi-task −
    single-task; for each row and init with off-the-shelf and fine-tuning runs: fine-tuning −
    off-the-shelf (a multi-task column only with one of the same tasks). Runs are paired by ``seed`` (the runs of one seed in one cell averaged first);
    seeds on one side only are listed in ``unpaired`` and never paired. Columns
    ``DIFFERENCE_COLUMNS``; ``n`` = 0 when no seed pairs (``mean`` NaN). ``mean``/``std``
    (ddof=1, NaN for n < 2) are over the paired seeds.
    """
    check_metric(runs, metric)
    runs = ensure_labels(runs)
    scale = _scale(metric)
    rows = []
    for (dataset, challenge, backbone), part in runs.groupby(list(ROW_LABEL_COLUMNS), sort=True):
        cells = {key: cell for key, cell in part.groupby(["mode", "init_label"], sort=True)}
        for kind, text, hi, lo, names in _comparisons(cells):
            pair = _pair(
                _by_seed(cells[hi], metric, scale), _by_seed(cells[lo], metric, scale), *names
            )
            rows.append(
                {
                    "dataset": dataset,
                    "challenge": challenge,
                    "backbone": backbone,
                    "kind": kind,
                    "comparison": text,
                    "minuend": "/".join(hi),
                    "subtrahend": "/".join(lo),
                    **pair,
                }
            )
    frame = pd.DataFrame(rows, columns=DIFFERENCE_COLUMNS)
    frame["n"] = frame["n"].astype(int)
    return frame


Comparison = tuple[str, str, tuple[str, str], tuple[str, str], tuple[str, str]]


def _same_test_images(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Two cells scored on the same images (one store's content): only then does a per-seed
    difference compare networks rather than test sets (a multi-task store's ``tasks=[t]`` runs)."""
    if "store_content_hash" not in a or "store_content_hash" not in b:
        return False
    both = pd.concat([a["store_content_hash"], b["store_content_hash"]])
    return bool(both.notna().all()) and both.nunique() == 1


def _comparisons(cells: dict[tuple[str, str], pd.DataFrame]) -> list[Comparison]:
    """(kind, text, minuend cell, subtrahend cell, their names) of one row's paired differences:
    θ̂ − θ per mode, multi-task − single-task per mode and init (on the same test images), then
    fine-tuning − off-the-shelf per init."""
    out: list[Comparison] = []
    for mode in sorted({m for m, _ in cells}, key=_mode_rank):
        inits = sorted((i for m, i in cells if m == mode), key=_init_rank)
        thetas = [i for i in inits if init_of_label(i) == INIT_IMAGENET]
        hats = [i for i in inits if init_of_label(i) == INIT_ARTTL]
        for theta in thetas:
            for hat in (h for h in hats if _same_tasks(h, theta)):
                text = f"{mode_text(mode)}: {init_text(hat)} − {init_text(theta)}"
                names = (init_text(hat), init_text(theta))
                out.append((THETA_HAT_MINUS_THETA, text, (mode, hat), (mode, theta), names))
    for mode, label in sorted(cells, key=lambda c: (_mode_rank(c[0]), _init_rank(c[1]))):
        base, tasks = split_multitask(label)
        if (
            tasks
            and (mode, base) in cells
            and _same_test_images(cells[mode, label], cells[mode, base])
        ):
            text = f"{mode_text(mode)}, {init_text(base)}: {multitask_text(tasks)} − single-task"
            names = (multitask_text(tasks), "single-task")
            out.append((MULTI_MINUS_SINGLE, text, (mode, label), (mode, base), names))
    tuned = {i for m, i in cells if m == "fine_tune"}
    shared = tuned & {i for m, i in cells if m == "off_the_shelf"}
    for init in sorted(shared, key=_init_rank):
        text = f"{init_text(init)}: {mode_text('fine_tune')} − {mode_text('off_the_shelf')}"
        names = (mode_text("fine_tune"), mode_text("off_the_shelf"))
        out.append(
            (
                FINE_TUNE_MINUS_OFF_THE_SHELF,
                text,
                ("fine_tune", init),
                ("off_the_shelf", init),
                names,
            )
        )
    return out


def differences_rows(
    diffs: pd.DataFrame, decimals: int = 2, unit: str = " (pp)", escape: Callable = str
) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the paired differences with n ≥ 1, labels once per block."""
    paired = diffs[diffs["n"] > 0]
    header = ["Dataset", "Challenge", "Backbone", "Comparison", f"Difference{unit}"]
    header += ["Paired seeds", "Unpaired"]
    if paired.empty:
        return header, []
    index = pd.MultiIndex.from_frame(paired[["dataset", "challenge", "backbone", "comparison"]])
    rows = []
    for labels, (_, row) in zip(_sparse_rows(index), paired.iterrows(), strict=True):
        cell = cell_text(row["mean"], row["std"], row["n"], decimals, signed=True)
        rows.append(
            [escape(x) for x in labels] + [cell, escape(row["seeds"]), escape(row["unpaired"])]
        )
    return header, rows


def differences_markdown(diffs: pd.DataFrame, decimals: int = 2, unit: str = " (pp)") -> str:
    header, rows = differences_rows(diffs, decimals, unit)
    if not rows:
        return "_no paired runs (θ and θ̂, or off-the-shelf and fine-tuning, on one seed)_\n"
    return _pipe_table(header, rows, 4, ["left"] * 4 + ["right", "left", "left"])


def differences_csv_frame(diffs: pd.DataFrame, decimals: int = 2) -> pd.DataFrame:
    """The paired differences with n ≥ 1; mean and std rounded, std empty for n = 1."""
    paired = diffs[diffs["n"] > 0].copy()
    paired["mean"] = paired["mean"].round(decimals)
    paired["std"] = paired["std"].round(decimals)
    return paired.reset_index(drop=True)
