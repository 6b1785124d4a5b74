"""Learning curves per challenge (the paper's Figures 2–3) from each run's metrics.csv."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure  # not pyplot: no global state, the caller's backend untouched
from matplotlib.ticker import MaxNLocator

from arttl.atomic import atomic_path
from arttl.reporting.cells import init_detail, init_of_label, init_text, mode_text
from arttl.results import INIT_IMAGENET

LINESTYLES = {"off_the_shelf": "--", "fine_tune": "-", "partial": "-.", "gradual": ":"}


INIT_MARKERS = {INIT_IMAGENET: "o", "arttl": "s", "none": "x"}  # θ, θ̂, from scratch


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


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(name)).strip("-") or "-"


def _label(row: pd.Series, with_seed: bool, show_init: bool = False) -> str:
    label = f"{row['backbone_label']} / {mode_text(row['mode'])}"
    init = row["init_label"]
    named = init_of_label(init) != INIT_IMAGENET or show_init  # θ said where θ̂ is beside it
    if (named and row["mode"] != "scratch") or init_detail(init):
        label += f" ({init_text(init)})"
    if with_seed:
        label += f" seed {row.get('seed')}"
    return label


def plot_learning_curves(
    runs: pd.DataFrame, out_dir: str | Path, metric: str = "val/top1"
) -> tuple[list[Path], list[str]]:
    """One PNG per (dataset, challenge), one line per run; returns (files, runs without history).

    Colour tells the backbone and initialisation (θ, θ̂, ...), marker the initialisation, line
    style the mode; epochs are counted from 1 (after
    one pass). Datasets, backbones and inits carry the labels of ``reporting.cells``.
    """
    from arttl.reporting.tables import ensure_labels

    runs = ensure_labels(runs)
    out_dir = Path(out_dir)
    written: list[Path] = []
    missing: list[str] = []
    percent = not metric.endswith("loss")
    for (dataset, challenge), group in runs.groupby(["dataset_label", "challenge"], sort=True):
        # colour = backbone and initialisation (θ and θ̂ of one backbone must not look alike),
        # line style = mode, marker = initialisation
        keys = sorted(set(zip(group["backbone_label"], group["init_label"], strict=True)))
        colours = {k: colormaps["tab10"](i % 10) for i, k in enumerate(keys)}
        pretrained = group.loc[group["mode"] != "scratch", "init_label"].map(init_of_label)
        show_init = pretrained.nunique() > 1  # θ beside θ̂ (or a weights file): name both
        labels = [_label(r, False, show_init) for _, r in group.iterrows()]
        repeated = {lab for lab in labels if labels.count(lab) > 1}  # seeds of one setting
        fig = Figure(figsize=(7, 4.5))
        ax = fig.subplots()
        lines = 0
        for _, row in group.sort_values(
            ["backbone_label", "mode", "init_label"], kind="stable"
        ).iterrows():
            history = row.get("history_path")
            series = read_history(history, metric) if isinstance(history, str) else None
            if series is None or series.empty:
                missing.append(str(row["run_dir"]))
                continue
            ax.plot(
                series.index + 1,
                series.to_numpy() * (100 if percent else 1),
                linestyle=LINESTYLES.get(row["mode"], (0, (1, 1))),  # other modes: dotted
                color=colours[(row["backbone_label"], row["init_label"])],
                marker=INIT_MARKERS.get(init_of_label(row["init_label"]), "^")
                if len(series) < 30
                else None,
                markersize=4,
                label=_label(row, _label(row, False, show_init) in repeated, show_init),
            )
            lines += 1
        if lines == 0:
            continue
        ax.set_title(f"{dataset} / {challenge}")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(metric.replace("/", " ") + (" (%)" if percent else ""))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        fig.tight_layout()
        path = out_dir / f"curves_{_safe(dataset)}_{_safe(challenge)}.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=120)
        written.append(path)
    return written, missing
