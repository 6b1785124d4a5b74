"""Learning curves per challenge (the paper's Figures 2–3) from each run's metrics.csv."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.colors import TABLEAU_COLORS
from matplotlib.figure import Figure  # not pyplot: no global state, the caller's backend untouched
from matplotlib.ticker import MaxNLocator

from arttl.atomic import atomic_path
from arttl.reporting.cells import (
    init_detail,
    init_of_label,
    init_text,
    mode_text,
    multitask_text,
    split_multitask,
)
from arttl.results import INIT_IMAGENET

MODE_ORDER = ("off_the_shelf", "fine_tune", "partial", "gradual", "scratch")
INIT_MARKERS = {INIT_IMAGENET: "o", "arttl": "s", "none": "x"}  # θ, θ̂, from scratch
# The first line of each initialisation keeps its colour in every report (θ blue, θ̂ orange,
# from scratch grey, a weights file green); more lines of one kind take the next free tab10 ones.
INIT_COLOURS = {INIT_IMAGENET: "tab:blue", "arttl": "tab:orange", "none": "tab:gray"}
OTHER_COLOUR = "tab:green"


def read_history(path: str | Path, metric: str = "val/top1") -> pd.Series:
    """``metric`` per epoch (last logged value of each epoch) from a Lightning CSVLogger file.

    Lightning writes train and val rows separately, each with NaN in the other's columns. The
    validate/test passes after ``fit`` (on the best checkpoint) log one epoch past the last one;
    only epochs with training rows are training epochs, so those rows are left out.
    """
    df = pd.read_csv(path)
    if metric not in df or "epoch" not in df:
        return pd.Series(dtype=float, name=metric)
    train_cols = [c for c in df.columns if c.startswith("train/")]
    if train_cols:
        trained = df.loc[df[train_cols].notna().any(axis=1), "epoch"].unique()
        df = df[df["epoch"].isin(trained)]
    df = df[["epoch", metric]].dropna()
    return df.groupby("epoch")[metric].last().astype(float).rename(metric)


def task_metric(metric: str, task: str) -> str:
    """``val/top1`` of one task of a multi-task run: ``val/<task>/top1`` (its metrics.csv logs
    ``<stage>/<task>/<metric>`` per task and ``<stage>/<metric>`` as the mean over tasks)."""
    stage, slash, name = str(metric).partition("/")
    return f"{stage}/{task}/{name}" if slash else str(metric)


def row_history(row: pd.Series, metric: str) -> pd.Series:
    """One table row's ``metric`` per epoch; empty when its run logged none.

    A row of a multi-task run reads its task's column only (the plain one is the mean over all
    tasks); a single-task row reads the plain column, else its task's (a run of one task of a
    multi-task store may log either).
    """
    history = row.get("history_path")
    if not isinstance(history, str):
        return pd.Series(dtype=float, name=metric)
    per_task = task_metric(metric, str(row.get("challenge")))
    multitask = row.get("multitask")
    together = isinstance(multitask, str) and bool(multitask)
    series = pd.Series(dtype=float, name=metric)
    for name in dict.fromkeys([per_task] if together else [metric, per_task]):
        series = read_history(history, name)
        if not series.empty:
            return series.rename(metric)
    return series


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(name)).strip("-") or "-"


def _line_label(backbone: str, init: str, several_backbones: bool, beside_multitask: bool) -> str:
    """What a line is; beside a multi-task line a single-task one says so too."""
    base, tasks = split_multitask(init)
    kind = init_of_label(base)
    who = {INIT_IMAGENET: "θ (ImageNet)", "none": "from scratch (random init)"}.get(kind)
    if who is None:  # a lone "θ̂" loses its hat in matplotlib's text layout: say what it is
        who = init_text(base) + ("" if init_detail(base) else " (art-tuned checkpoint)")
    if tasks or beside_multitask:
        who += f", {multitask_text(tasks) or 'single-task'}"
    return (f"{backbone} · " if several_backbones else "") + who


def _seed_band(histories: list[pd.Series]) -> pd.DataFrame:
    """Mean, min and max per epoch over the runs that reached it (runs stop at different epochs)."""
    table = pd.concat(histories, axis=1)
    return pd.DataFrame(
        {"mean": table.mean(axis=1), "min": table.min(axis=1), "max": table.max(axis=1)}
    )


Curves = dict[tuple[str, str, str], list[pd.Series]]  # (mode, backbone, init) -> seed histories


def _histories(group: pd.DataFrame, metric: str, scale: float, missing: list[str]) -> Curves:
    curves: Curves = {}
    for _, row in group.iterrows():
        series = row_history(row, metric)
        if series.empty:
            missing.append(str(row["run_dir"]))
            continue
        key = (row["mode"], row["backbone_label"], row["init_label"])
        curves.setdefault(key, []).append(series * scale)
    return curves


def _draw_panel(ax: Any, mode: str, curves: Curves, colours: dict, several: bool) -> dict:
    """One mode's lines (mean over seeds) and bands (min–max); returns {label: line}."""
    handles, last = {}, 1
    beside = any(split_multitask(init)[1] for _, init in colours)
    for backbone, init in colours:
        histories = curves.get((mode, backbone, init))
        if not histories:
            continue
        band = _seed_band(histories)
        x, colour, label = (
            band.index + 1,
            colours[(backbone, init)],
            _line_label(backbone, init, several, beside),
        )
        (line,) = ax.plot(
            x, band["mean"].to_numpy(), color=colour, linewidth=2, label=label,
            marker=INIT_MARKERS.get(init_of_label(init), "^") if len(band) < 30 else None,
            markersize=4,
        )  # fmt: skip
        if len(histories) > 1:
            ax.fill_between(x, band["min"], band["max"], color=colour, alpha=0.18, lw=0)
        handles[label] = line
        last = max(last, int(x.max()))
    ax.set_title(mode_text(mode), fontsize="medium")
    ax.set_xlabel("epochs trained")  # 1 = after the first pass (best_epoch in results.json: 0)
    ax.set_xlim(0.5, last + 0.5)  # whole epochs, even for a one-epoch run (no 0.95…1.05 ticks)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.grid(alpha=0.3)
    return handles


def line_colours(lines: list[tuple[str, str]]) -> dict[tuple[str, str], Any]:
    """(backbone, init) -> colour: the first line of each initialisation its INIT_COLOURS one,
    further lines of a kind the tab10 colours no kind owns, in turn."""
    owned = {*INIT_COLOURS.values(), OTHER_COLOUR}
    spare = [c for c in TABLEAU_COLORS if c not in owned]
    out: dict[tuple[str, str], Any] = {}
    for key in lines:
        colour = INIT_COLOURS.get(init_of_label(key[1]), OTHER_COLOUR)
        if colour in out.values():
            colour = spare[sum(c in spare for c in out.values()) % len(spare)]
        out[key] = colour
    return out


def _curves_figure(title: str, curves: Curves, ylabel: str, note: str = "") -> Figure:
    modes = sorted(
        {m for m, _, _ in curves},
        key=lambda m: (m not in MODE_ORDER, MODE_ORDER.index(m) if m in MODE_ORDER else 0, m),
    )
    lines = sorted({(b, i) for _, b, i in curves}, key=lambda k: (init_of_label(k[1]) == "none", k))
    colours = line_colours(lines)
    several = len({b for b, _ in lines}) > 1
    ncols = min(len(modes), 3)
    nrows = -(-len(modes) // ncols)
    # wide enough for the two-line title even with one panel (a lone panel clipped it)
    fig = Figure(figsize=(max(4.0 * ncols + 0.5, 9.0), 3.2 * nrows + 1.3))
    axes = fig.subplots(nrows, ncols, sharey=True, squeeze=False).ravel()
    handles: dict[str, Any] = {}
    for ax, mode in zip(axes, modes, strict=False):
        for label, line in _draw_panel(ax, mode, curves, colours, several).items():
            handles.setdefault(label, line)
    for ax in axes[len(modes) :]:
        ax.set_visible(False)
    for ax in axes[::ncols]:
        ax.set_ylabel(ylabel)
    seeds = any(len(h) > 1 for h in curves.values())
    how = (
        "line = mean over its seeds, band = their min–max; after a run stops early the mean is "
        "over the runs still training"
        if seeds
        else "one run per line"
    ) + (f"; {note}" if note else "")
    # wrapped to the figure (about 13 characters an inch at this size): a lone panel cut it off
    width = int(fig.get_figwidth() * 13)
    fig.suptitle(f"{title}, one panel per mode\n" + textwrap.fill(how, width), fontsize="medium")
    fig.legend(
        list(handles.values()), list(handles), loc="lower center", ncol=min(len(handles), 4),
        fontsize="small", frameon=False,
    )  # fmt: skip
    fig.tight_layout(rect=(0, 0.05 + 0.03 * (len(handles) > 4), 1, 1))
    return fig


def _precision_note(group: pd.DataFrame) -> str:
    """Runs trained in another precision than their reported metrics were computed in: the
    curves are the training-time values, so a table's number may differ from the curve's point."""
    if "precision" not in group or "eval_precision" not in group:
        return ""
    trained = group.loc[group["precision"].ne(group["eval_precision"]), "precision"].dropna()
    if trained.empty:
        return ""
    return (
        f"points as logged while training ({', '.join(sorted(set(trained)))}); the tables "
        "re-evaluate the best checkpoint in fp32, so they can differ by a few images"
    )


def plot_learning_curves(
    runs: pd.DataFrame, out_dir: str | Path, metric: str = "val/top1"
) -> tuple[list[Path], list[str]]:
    """One PNG per (dataset, challenge); returns (files, runs without history, each once).

    One panel per mode (shared y axis, so modes compare at a glance); in each, one line per
    backbone and initialisation (θ, θ̂, random): the mean over its seeds per epoch, the band
    their min–max, so a reader sees the spread without counting lines. Epochs are counted from
    1 (after one pass); labels come from ``reporting.cells``. A task of a multi-task run is a
    line of its own, read from its task's column (see ``row_history``).
    """
    from arttl.reporting.tables import ensure_labels

    runs = ensure_labels(runs)
    written: list[Path] = []
    missing: list[str] = []
    percent = not metric.endswith("loss")
    ylabel = metric.replace("/", " ") + (" (%)" if percent else "")
    for (dataset, challenge), group in runs.groupby(["dataset_label", "challenge"], sort=True):
        curves = _histories(group, metric, 100 if percent else 1, missing)
        if not curves:
            continue
        fig = _curves_figure(
            f"{dataset} / {challenge}: {metric} per epoch", curves, ylabel, _precision_note(group)
        )
        path = Path(out_dir) / f"curves_{_safe(dataset)}_{_safe(challenge)}.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
        written.append(path)
    return written, list(dict.fromkeys(missing))  # a multi-task run has a row per task
