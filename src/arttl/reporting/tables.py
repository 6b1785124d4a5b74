"""The paper's Tables 2 and 3 from a table of runs, rendered as CSV, Markdown and LaTeX.

Table 2: rows challenge × backbone, columns transfer mode (off-the-shelf and fine-tuning side by
side, other modes after them), ImageNet initialisation (θ). Table 3: the same rows on a
collection where some runs start from an art-tuned arttl checkpoint (θ̂), columns mode × init.
Cells are the mean of a metric over the runs that fall in them, in percent; a combination
without a run is NaN, which every renderer writes as an empty cell, never as 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd

from arttl.results import INIT_ARTTL, INIT_FILE, INIT_IMAGENET, INIT_NONE, INITS

ROW_KEYS = ("dataset", "challenge", "backbone")
COLUMN_KEYS = ("mode", "init")
PAPER_MODES = ("off_the_shelf", "fine_tune")
MODE_ORDER = ("off_the_shelf", "fine_tune", "partial", "gradual", "scratch")
MODE_LABELS = {
    "off_the_shelf": "Off-the-shelf",
    "fine_tune": "Fine-tuning",
    "partial": "Partial fine-tuning",
    "gradual": "Gradual unfreezing",
    "scratch": "From scratch",
}
INIT_LABELS = {INIT_IMAGENET: "θ", INIT_ARTTL: "θ̂", INIT_NONE: "random init", INIT_FILE: "file"}
INIT_LATEX = {
    INIT_IMAGENET: r"$\theta$",
    INIT_ARTTL: r"$\hat{\theta}$",
    INIT_NONE: "random init",
    INIT_FILE: "file",
}
ROW_LABELS = {"dataset": "Dataset", "challenge": "Challenge", "backbone": "Backbone"}


def _mode_rank(mode: str) -> tuple[int, str]:
    return (MODE_ORDER.index(mode) if mode in MODE_ORDER else len(MODE_ORDER), mode)


def _check_metric(runs: pd.DataFrame, metric: str) -> None:
    from arttl.errors import choice_error

    if metric not in runs:
        choices = [c for c in runs.columns if c.startswith(("test_", "val_"))]
        raise choice_error("metric", metric, choices)


def _pivot(runs: pd.DataFrame, metric: str, columns: list[tuple[str, str]]) -> pd.DataFrame:
    """Mean ``metric`` (in %) per row key × (mode, init), on every backbone of each dataset."""
    scale = 1.0 if metric.endswith("loss") else 100.0
    means = runs.groupby([*ROW_KEYS, *COLUMN_KEYS], dropna=False)[metric].mean() * scale
    rows = []
    for dataset, part in runs.groupby("dataset", sort=True):
        # A backbone that ran on one challenge of a dataset but failed on another shows as an
        # empty row there instead of vanishing.
        for challenge in sorted(part["challenge"].unique()):
            rows += [(dataset, challenge, b) for b in sorted(part["backbone"].unique())]
    index = pd.MultiIndex.from_tuples(rows, names=list(ROW_KEYS))
    col_index = pd.MultiIndex.from_tuples(columns, names=list(COLUMN_KEYS))
    table = pd.DataFrame(np.nan, index=index, columns=col_index, dtype=float)
    for (dataset, challenge, backbone, mode, init), value in means.items():
        if (mode, init) in table.columns and (dataset, challenge, backbone) in table.index:
            table.loc[(dataset, challenge, backbone), (mode, init)] = value
    return table


def table2(runs: pd.DataFrame, metric: str = "test_top1") -> pd.DataFrame:
    """Paper Table 2: challenge × backbone rows, (mode, init) columns, every run except θ̂ ones.

    Columns: off-the-shelf and fine-tuning with θ first (always, empty if not run), then the
    other modes; runs from another initialisation (random, a weights file) get their own column.
    """
    _check_metric(runs, metric)
    runs = runs[runs["init"] != INIT_ARTTL]
    if runs.empty:
        return _pivot(runs, metric, [])
    present = set(zip(runs["mode"], runs["init"], strict=True))
    theta = [(m, INIT_IMAGENET) for m in PAPER_MODES]
    others = sorted(
        present - set(theta), key=lambda c: (INITS.index(c[1]) > 0, _mode_rank(c[0]), c[1])
    )
    return _pivot(runs, metric, theta + others)


def table3(runs: pd.DataFrame, metric: str = "test_top1") -> pd.DataFrame:
    """Paper Table 3: on each dataset with θ̂ runs, θ versus θ̂ side by side for every mode.

    Off-the-shelf and fine-tuning always get both a θ and a θ̂ column; other modes and inits
    appear when present. Empty (no rows) when no run started from an arttl checkpoint.
    """
    _check_metric(runs, metric)
    datasets = set(runs.loc[runs["init"] == INIT_ARTTL, "dataset"])
    runs = runs[runs["dataset"].isin(datasets)]
    if runs.empty:
        return _pivot(runs, metric, [])
    modes = sorted(set(runs["mode"]) | set(PAPER_MODES), key=_mode_rank)
    present = set(zip(runs["mode"], runs["init"], strict=True))
    columns = []
    for mode in modes:
        inits = {c[1] for c in present if c[0] == mode}
        if mode != "scratch":  # scratch has no initialisation to compare
            inits |= {INIT_IMAGENET, INIT_ARTTL}
        columns += [(mode, i) for i in sorted(inits, key=INITS.index)]
    return _pivot(runs, metric, columns)


def best_mask(table: pd.DataFrame, higher_is_better: bool = True) -> pd.DataFrame:
    """True on the best cell(s) of each challenge (all backbones and columns of that challenge)."""
    mask = pd.DataFrame(False, index=table.index, columns=table.columns)
    if table.empty:
        return mask
    for _, block in table.groupby(level=["dataset", "challenge"], sort=False):
        values = block.to_numpy(dtype=float)
        if np.isnan(values).all():
            continue
        best = np.nanmax(values) if higher_is_better else np.nanmin(values)
        mask.loc[block.index] = np.isclose(values, best, rtol=0, atol=1e-9)
    return mask


def column_labels(table: pd.DataFrame, latex: bool = False, show_init: bool = False) -> list[str]:
    """One header per column: the mode, plus the init where it is not plain ImageNet (θ).

    ``show_init`` names θ too (Table 3, where θ and θ̂ stand side by side).
    """
    labels = INIT_LATEX if latex else INIT_LABELS
    out = []
    for mode, init in table.columns:
        label = MODE_LABELS.get(mode, mode.replace("_", " "))
        if latex:
            label = latex_escape(label)
        if show_init or (init != INIT_IMAGENET and not (mode == "scratch" and init == INIT_NONE)):
            label += f" ({labels.get(init, init)})"
        out.append(label)
    return out


def _fmt(value: float, decimals: int) -> str:
    return (
        ""
        if value is None or (isinstance(value, float) and math.isnan(value))
        else (f"{value:.{decimals}f}")
    )


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


def display_rows(
    table: pd.DataFrame,
    decimals: int = 2,
    higher_is_better: bool = True,
    show_init: bool = False,
    bold: Callable[[str], str] = "**{}**".format,
) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of strings: row labels once per block, best per challenge through ``bold``.

    Shared by the Markdown file and the terminal table so both show the same cells.
    """
    mask = best_mask(table, higher_is_better)
    header = [ROW_LABELS[n] for n in table.index.names] + column_labels(table, False, show_init)
    rows = []
    for labels, values, best in zip(
        _sparse_rows(table.index), table.to_numpy(), mask.to_numpy(), strict=True
    ):
        cells = [
            bold(_fmt(v, decimals)) if b else _fmt(v, decimals)
            for v, b in zip(values, best, strict=True)
        ]
        rows.append(labels + cells)
    return header, rows


def to_markdown(
    table: pd.DataFrame, decimals: int = 2, higher_is_better: bool = True, show_init: bool = False
) -> str:
    """GitHub pipe table (pandas + tabulate), best per challenge in bold, missing runs empty."""
    if table.empty:
        return "_no runs for this table_\n"
    header, rows = display_rows(table, decimals, higher_is_better, show_init)
    align = ["left"] * table.index.nlevels + ["right"] * table.shape[1]
    frame = pd.DataFrame(rows, columns=header)
    return (
        frame.to_markdown(index=False, tablefmt="pipe", colalign=align, disable_numparse=True)
        + "\n"
    )


def latex_escape(text: str) -> str:
    for char, repl in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$")):
        text = text.replace(char, repl)
    for char in "#_{}":
        text = text.replace(char, "\\" + char)
    return text.replace("~", r"\textasciitilde{}").replace("^", r"\textasciicircum{}")


def to_latex(
    table: pd.DataFrame,
    decimals: int = 2,
    higher_is_better: bool = True,
    caption: str | None = None,
    two_level_header: bool = False,
) -> str:
    """booktabs tabular via pandas' Styler; best per challenge in \\textbf, missing runs empty.

    ``two_level_header`` puts modes on one header row and θ/θ̂ under them (Table 3).
    ``caption`` is LaTeX already (escape plain text with ``latex_escape``).
    """
    if table.empty:
        return "% no runs for this table\n"
    mask = best_mask(table, higher_is_better)
    shown = table.copy()
    if two_level_header:
        shown.columns = pd.MultiIndex.from_tuples(
            [
                (latex_escape(MODE_LABELS.get(m, m)), INIT_LATEX.get(i, latex_escape(i)))
                for m, i in table.columns
            ]
        )
    else:
        shown.columns = column_labels(table, latex=True)
    shown.index = shown.index.set_names([ROW_LABELS[n] for n in table.index.names])
    styler = (
        shown.style.format(precision=decimals, na_rep="")
        .format_index(escape="latex", axis=0)
        .apply(lambda _: np.where(mask.to_numpy(), "textbf:--rwrap;", ""), axis=None)
    )
    latex = styler.to_latex(
        hrules=True,
        multirow_align="naive",  # labels once per block, without needing the multirow package
        multicol_align="c",
        caption=caption,
        position_float="centering" if caption else None,
    )
    return "% needs \\usepackage{booktabs}\n" + latex


def to_csv_frame(table: pd.DataFrame, decimals: int = 2) -> pd.DataFrame:
    """Flat columns ``<mode>/<init>`` and rounded values; NaN stays NaN (an empty CSV field)."""
    flat = table.round(decimals).copy()
    flat.columns = [f"{m}/{i}" for m, i in table.columns]
    return flat.reset_index()


def rich_rows(
    table: pd.DataFrame, decimals: int = 2, higher_is_better: bool = True, show_init: bool = False
) -> tuple[list[str], list[list[str]]]:
    """(header, rows) for a rich.Table, best per challenge marked up in bold."""
    return display_rows(table, decimals, higher_is_better, show_init, "[bold]{}[/bold]".format)
