"""How good is a checkpoint, class by class: metrics, per-class report, confusion, mistakes.

Everything is computed from one pass of predictions over a store split, kept in
``predictions.csv``, so every number in the output folder can be recomputed from that file.

A multi-task checkpoint (``ArtClassifier(tasks=...)``) gets one such folder per task,
``<out>/<task>/``, computed from the task's own columns of the logits (a softmax over them) and
over the images that have the task's label only: the others are left out of that task's
metrics *and* of its ``predictions.csv`` (whose ``index`` column is the image's row in the
store split, so the tasks' files join on it). ``<out>/metrics.json`` and ``<out>/summary.md``
list every task's metrics, how many images each left out, and their mean over tasks.
"""

from __future__ import annotations

import json
import math
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure  # not pyplot: no global state, the caller's backend untouched
from PIL import Image
from torch.utils.data import DataLoader
from torchmetrics.classification import (
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

from arttl.atomic import atomic_path, write_json_atomic, write_text_atomic
from arttl.data.store import (
    SPLITS,
    H5ImageDataset,
    is_complete,
    read_attrs,
    read_class_names,
    read_hashes,
    read_task_classes,
    split_file,
)
from arttl.errors import ConfigError, choice_error
from arttl.inference.prediction import load_classifier
from arttl.inference.runner import STDERR, predict_batches, top_k_table
from arttl.models.classifier import METRIC_KEYS, ArtClassifier, compute_metrics, mean_record
from arttl.training.provenance import hashes_to_tensor

TOP_K_SAVED = 5  # ranks written per image in predictions.csv


def resolve_split_file(model: ArtClassifier, store: str | Path | None, split: str | None) -> Path:
    """``<store>/<split>.h5`` from ``store=`` or the store the checkpoint was trained on.

    A ``.h5`` file is the split it says it is (its ``split`` attribute); asking for another
    split of it is an error rather than a mislabelled evaluation.
    """
    if split is not None and split not in SPLITS:
        raise choice_error("split", split, SPLITS)
    store = store or model.hparams.get("store")
    if not store:
        raise ConfigError(
            "the checkpoint records no store; pass store.dir=<prepared folder> "
            "(data/prepared/<dataset>_<challenge>__<source>)."
        )
    store = Path(store)
    path = store if store.suffix == ".h5" else split_file(store, split or "test")
    if not path.is_file():
        have = sorted(p.name for p in store.glob("*.h5")) if store.is_dir() else []
        raise ConfigError(
            f"store={str(store)!r}: {path.name} not found"
            + (f" (found {', '.join(have)})" if have else "")
            + "; pass store.dir=<prepared folder> or prepare it with `python -m arttl.prepare`."
        )
    if not is_complete(path):
        raise ConfigError(
            f"store file {str(path)!r} is incomplete (interrupted prepare); rebuild it."
        )
    holds = read_attrs(path).get("split")
    if split is not None and holds is not None and holds != split:
        raise ConfigError(
            f"store file {str(path)!r} holds the {holds!r} split, not split={split}; leave "
            f"split= out to evaluate it as {holds!r}, or pass the {split}.h5 file."
        )
    check_store_classes(model, path)
    return path


def _class_mismatch(path: Path, what: str, names: list[str], wanted: list[str]) -> ConfigError:
    return ConfigError(
        f"store file {str(path)!r} has {what}classes {names[:5]}... ({len(names)}) but the "
        f"checkpoint was trained on {wanted[:5]}... ({len(wanted)}); "
        "pass the store the checkpoint was trained on (store.dir=...)."
    )


def check_store_classes(model: ArtClassifier, path: Path) -> None:
    """The store file must have the checkpoint's tasks with the same classes in the same order
    (a class order that differs would silently mislabel every prediction)."""
    available = read_task_classes(path)
    tasks = model.task_names
    if tasks is None and available is None:
        names = read_class_names(path)
        if names != model.class_names:
            raise _class_mismatch(path, "", names, model.class_names)
        return
    have = list(available) if available else [str(read_attrs(path).get("challenge"))]
    want = list(model.task_classes)
    missing = [t for t in want if t not in have]
    if tasks is None or available is None or missing:
        has = f"tasks {have}" if available else f"one task ({have[0]!r}; a one-task store)"
        needs = f"tasks {want}" if tasks else f"one task ({want[0]!r}; a one-task network)"
        lacks = f" ({', '.join(missing)} missing)" if missing else ""
        raise ConfigError(
            f"store file {str(path)!r} has {has} but the checkpoint has {needs}{lacks}; pass "
            "a store prepared with the checkpoint's tasks (dataset.challenge="
            f"{want if tasks else want[0]}), e.g. the one it was trained on."
        )
    for task in want:
        if available[task] != model.task_classes[task]:
            raise _class_mismatch(
                path, f"task {task!r} ", available[task], model.task_classes[task]
            )


def seen_in_training(model: ArtClassifier, path: Path) -> dict[str, int] | None:
    """How many images of ``path`` the checkpoint trained / validated on (by source-file hash);
    None when the checkpoint or the store predates these records."""
    members = (model.provenance or {}).get("split_members")
    hashes = read_hashes(path)
    if not members or hashes is None:
        return None
    here = hashes_to_tensor(hashes)
    return {s: int(torch.isin(here, members[s]).sum()) for s in ("train", "val") if s in members}


def check_leakage(
    model: ArtClassifier, path: Path, split: str, allow_other_store: bool
) -> dict[str, Any]:
    """Refuse to report a held-out metric on images the model was trained or validated on."""
    attrs = read_attrs(path)
    ckpt_store = ((model.provenance or {}).get("store") or {}).get("content_hash")
    same = ckpt_store is not None and attrs.get("content_hash") == ckpt_store
    seen = seen_in_training(model, path)
    out: dict[str, Any] = {"same_store_as_training": same if ckpt_store else None, "seen": seen}
    if seen is None:
        STDERR.print(
            "[yellow]warning[/yellow]: this checkpoint or store predates arttl's provenance "
            "records; cannot check that the evaluated images were not used in training."
        )
        return out
    if same or split in ("train", "val"):
        return out
    leaked = sum(seen.values())
    if leaked == 0:
        return out
    message = (
        f"{leaked} of the {attrs.get('count')} images of {str(path)!r} (split "
        f"{split!r}) were in the checkpoint's training data ({seen.get('train', 0)} in its train "
        f"split, {seen.get('val', 0)} in its val split): this store was split differently from "
        "the one the checkpoint was trained on, so its test accuracy would be overstated."
    )
    if not allow_other_store:
        raise ConfigError(
            message
            + (
                rebuilt_store_hint(model, path)
                or f" Evaluate on the checkpoint's own store (store.dir={model.hparams.get('store')})"
            )
            + ", or add allow_other_store=true to evaluate anyway (the counts are then written to "
            "metrics.json)."
        )
    STDERR.print(f"[bold red]warning[/bold red]: {message} (allow_other_store=true)")
    return out


def rebuilt_store_hint(model: ArtClassifier, path: Path) -> str:
    """When ``path`` is in the checkpoint's own store folder, rebuilt since it trained (another
    store setting): which settings changed, and the prepare command that rebuilds the checkpoint's
    store elsewhere (the same settings and seed give the same split). Empty otherwise."""
    config = (model.provenance or {}).get("run_config") or {}
    own = ((model.provenance or {}).get("store") or {}).get("dir")
    if not own or Path(own).resolve() != path.resolve().parent or "store" not in config:
        return ""
    now = json.loads(read_attrs(path).get("settings") or "{}")
    changed = {k: v for k, v in config["store"].items() if k in now and now[k] != v}
    if not changed:
        return ""
    diff = ", ".join(f"store.{k}: {v!r} -> {now[k]!r}" for k, v in changed.items())
    ds = config.get("dataset") or {}
    source = (
        f"+experiment={config['experiment']}"
        if config.get("experiment") not in (None, "default")
        else f"dataset={ds.get('name')} dataset.root={ds.get('root')} "
        f"dataset.challenge={ds.get('challenge')}"
    )
    trained = {k: v for k, v in config["store"].items() if k in now}  # every recorded setting
    again = " ".join(
        f"store.{k}={json.dumps(v, separators=(',', ':'))}" for k, v in trained.items()
    )
    return (
        f" {own} is the checkpoint's own store folder, rebuilt since it trained ({diff}). "
        f"Rebuild its store in another folder, `python -m arttl.prepare {source} {again} "
        f"store.dir={own}-as-trained`, then evaluate with store={own}-as-trained"
    )


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion (by hand: a few lines, no scipy call needed)."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def predict_logits(
    model: ArtClassifier, dataset: H5ImageDataset, batch_size: int = 64, num_workers: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (N, C) float32 on CPU, labels (N,)) for every image of ``dataset``, in order."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    logits, labels = [], []
    for (_, y), out in predict_batches(model, loader, output="logits"):
        logits.append(out)
        labels.append(y)
    return torch.cat(logits), torch.cat(labels)


def per_class_report(
    logits: torch.Tensor, labels: torch.Tensor, class_names: list[str]
) -> pd.DataFrame:
    """precision / recall / F1 / support per class (0 where undefined, like scikit-learn)."""
    c = len(class_names)
    preds = logits.argmax(dim=1)
    kwargs: dict[str, Any] = {"num_classes": c, "average": None}
    if len(labels) == 0:  # a task without labels in this split: all 0 (torchmetrics refuses)
        zeros = np.zeros(c)
        frame = {"precision": zeros, "recall": zeros, "f1": zeros, "support": zeros.astype(int)}
        return pd.DataFrame({"class": class_names, **frame})
    return pd.DataFrame(
        {
            "class": class_names,
            "precision": MulticlassPrecision(**kwargs)(preds, labels).numpy(),
            "recall": MulticlassRecall(**kwargs)(preds, labels).numpy(),
            "f1": MulticlassF1Score(**kwargs)(preds, labels).numpy(),
            "support": torch.bincount(labels, minlength=c).numpy(),
        }
    )


def confusion_counts(logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """Counts, rows = true class, columns = predicted class."""
    if len(labels) == 0:
        return np.zeros((logits.shape[1], logits.shape[1]), dtype=np.int64)
    cm = MulticlassConfusionMatrix(num_classes=logits.shape[1])
    return cm(logits.argmax(dim=1), labels).numpy().astype(np.int64)


def plot_confusion(
    counts: np.ndarray,
    class_names: list[str],
    path: str | Path,
    top_n: int = 30,
    task: str | None = None,
) -> list[str]:
    """Row-normalised confusion PNG; with more than ``top_n`` classes, the ``top_n`` most frequent.

    Rows are normalised over *all* predictions, so with a subset a row sums to less than 1: the
    rest went to classes not shown. Returns the class names shown.
    """
    support = counts.sum(axis=1)
    shown = np.arange(len(class_names))
    if len(shown) > top_n:
        shown = np.sort(np.argsort(-support, kind="stable")[:top_n])
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = counts / support[:, None]
    norm = np.nan_to_num(norm)[np.ix_(shown, shown)]
    names = [_short(class_names[i], 28) for i in shown]
    n = len(shown)
    size = min(max(5.0, 0.32 * n + 2.5), 40.0)
    fig = Figure(figsize=(size + 1, size))
    ax = fig.subplots()
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    ax.set_xticks(range(n), names, rotation=90, fontsize=8 if n > 20 else 10)
    ax.set_yticks(range(n), names, fontsize=8 if n > 20 else 10)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    subset = f" ({n} most frequent of {len(class_names)} classes)" if n < len(class_names) else ""
    ax.set_title("Confusion matrix" + (f" — {task}" if task else "") + ", rows normalised" + subset)
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if norm[i, j] > 0:
                    colour = "white" if norm[i, j] > 0.5 else "black"
                    ax.text(
                        j,
                        i,
                        f"{norm[i, j]:.2f}",
                        ha="center",
                        va="center",
                        color=colour,
                        fontsize=8,
                    )
    fig.tight_layout()
    _save(fig, path)
    return [class_names[i] for i in shown]


def confident_mistakes(probs: torch.Tensor, labels: torch.Tensor, k: int) -> list[int]:
    """Indices of the ``k`` wrong predictions with the highest predicted probability."""
    conf, pred = probs.max(dim=1)
    wrong = torch.nonzero(pred != labels).flatten()
    order = torch.argsort(conf[wrong], descending=True, stable=True)
    return wrong[order][:k].tolist()


class ImageSource(Protocol):
    """What the mistakes grid reads images from: a store split, or one task's rows of it."""

    def image(self, index: int) -> Image.Image: ...


class TaskRows:
    """The images of a task's labelled rows of a dataset, by position among those rows, so a
    task's mistakes grid indexes its images as it indexes its (filtered) probabilities."""

    def __init__(self, dataset: ImageSource, rows: np.ndarray) -> None:
        self.dataset = dataset
        self.rows = np.asarray(rows)

    def image(self, index: int) -> Image.Image:
        return self.dataset.image(int(self.rows[index]))


def plot_mistakes(
    dataset: ImageSource,
    indices: list[int],
    probs: torch.Tensor,
    labels: torch.Tensor,
    class_names: list[str],
    path: str | Path,
    task: str | None = None,
) -> None:
    """A grid of the stored images, titled true / predicted (probability); a multi-task
    network's figure names its task."""
    cols = min(4, len(indices))
    rows = math.ceil(len(indices) / cols)
    fig = Figure(figsize=(3.2 * cols, 3.7 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, indices, strict=False):
        p, pred = probs[i].max(dim=0)
        ax.imshow(dataset.image(i))
        ax.set_title(
            f"true: {_short(class_names[int(labels[i])], 22)}\n"
            f"pred: {_short(class_names[int(pred)], 22)} ({float(p):.0%})",
            fontsize=9,
        )
    fig.suptitle("Most confident mistakes" + (f" — {task}" if task else ""))
    _save(fig, path)


def _short(text: str, width: int) -> str:
    return textwrap.shorten(str(text), width=width, placeholder="…") or str(text)[:width]


def _save(fig: Figure, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)


def predictions_table(
    probs: torch.Tensor,
    labels: torch.Tensor,
    paths: list[str],
    class_names: list[str],
    index: np.ndarray | None = None,
) -> pd.DataFrame:
    """One row per image: its row in the store split (``index``; default 0..N-1), path, true
    label, top ranks (label_r, prob_r), prob of the true class."""
    names = np.array(class_names, dtype=object)
    rows = np.arange(len(labels)) if index is None else np.asarray(index)
    table = pd.DataFrame({"index": rows, "path": paths})
    table["label"] = names[labels.numpy()]
    table = pd.concat([table, top_k_table(probs, class_names, TOP_K_SAVED)], axis=1)
    table["prob_true"] = probs.gather(1, labels[:, None]).squeeze(1).numpy()
    table["correct"] = table["label"] == table["label_1"]
    return table


@dataclass
class Evaluation:
    """One evaluation folder. A multi-task one has ``tasks`` (task -> its folder's Evaluation);
    its ``metrics`` are the summary (means over tasks, ``per_task``), and ``per_class`` /
    ``predictions`` its tasks' tables stacked, with a ``task`` column."""

    metrics: dict[str, Any]
    per_class: pd.DataFrame
    predictions: pd.DataFrame
    out_dir: Path
    files: list[Path] = field(default_factory=list)
    tasks: dict[str, Evaluation] = field(default_factory=dict)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f} %"


def _title(hp: dict[str, Any]) -> str:
    return f"{hp.get('backbone')} / {hp.get('mode')} on {hp.get('dataset')}/{hp.get('challenge')}"


def _summary_md(
    ev: Evaluation, hp: dict[str, Any], shown: list[str], mistakes: int, task: str | None = None
) -> str:
    m = ev.metrics
    images = f"{m['samples']} images"
    if task is not None:
        images = (
            f"{m['samples']} images with a {task} label ({m['unlabelled']} without one left "
            "out of these metrics and of predictions.csv)"
        )
    lines = [
        f"# Evaluation: {_title(hp)}" + (f", task {task}" if task else ""),
        "",
        f"- checkpoint: `{m['checkpoint']}`",
        f"- split: `{m['split']}` of `{m['store_file']}` — {images}, {m['num_classes']} classes",
        "",
        "| metric | value |",
        "| --- | ---: |",
    ]
    for key, label in (
        ("top1", "top-1"),
        ("top3", "top-3"),
        ("top5", "top-5"),
        ("macro_top1", "macro top-1 (mean per-class recall)"),
    ):
        lines.append(f"| {label} | {_pct(m[key])} |")
    lo, hi = m["top1_ci95"]
    if lo is not None:
        lines.append(f"| top-1, 95 % Wilson interval | {100 * lo:.2f} – {100 * hi:.2f} % |")
    loss = "—" if m["loss"] is None else f"{m['loss']:.4f}"
    lines.append(f"| loss (cross-entropy) | {loss} |")
    worst = ev.per_class[ev.per_class["support"] > 0].sort_values("f1").head(5)
    lines += ["", "Lowest F1 (classes with test images):", ""]
    lines += [
        f"- {r['class']}: F1 {r['f1']:.2f} (precision {r['precision']:.2f}, recall "
        f"{r['recall']:.2f}, {int(r['support'])} images)"
        for _, r in worst.iterrows()
    ]
    lines += [
        "",
        "Files: [per_class.csv](per_class.csv) · [predictions.csv](predictions.csv) · "
        "[confusion_matrix.csv](confusion_matrix.csv) (counts) · [metrics.json](metrics.json)",
        "",
        "## Confusion matrix"
        + (f" ({len(shown)} most frequent classes)" if len(shown) < m["num_classes"] else ""),
        "",
        "![confusion matrix](confusion_matrix.png)",
        "",
        "## Most confident mistakes",
        "",
        "![most confident mistakes](mistakes.png)" if mistakes else "No mistakes on this split.",
        "",
    ]
    return "\n".join(lines)


def _tasks_summary_md(ev: Evaluation, hp: dict[str, Any]) -> str:
    """The multi-task summary: one row of metrics per task, their mean, links to each folder."""
    m = ev.metrics
    keys = ("top1", "top3", "top5", "macro_top1")
    lines = [
        f"# Evaluation: {_title(hp)} ({len(ev.tasks)} tasks)",
        "",
        f"- checkpoint: `{m['checkpoint']}`",
        f"- split: `{m['split']}` of `{m['store_file']}` — {m['samples']} images",
        "",
        "| task | images | without label | top-1 | top-3 | top-5 | macro top-1 | loss |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    rows = [(f"[{t}]({t}/summary.md)", r) for t, r in m["per_task"].items()]
    for name, r in [*rows, ("mean over tasks", {**m, "samples": "", "unlabelled": ""})]:
        loss = "—" if r["loss"] is None else f"{r['loss']:.4f}"
        cells = [name, str(r["samples"]), str(r["unlabelled"]), *(_pct(r[k]) for k in keys), loss]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Each task is measured on the images that have its label: the others are left out of "
        "its metrics and of its `predictions.csv` (`index` = the image's row in the store "
        "split). Per-class report, confusion matrix and mistakes: in each task's folder.",
        "",
    ]
    return "\n".join(lines)


def _scores(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    """The metrics by training's own definitions (one top-k rule) and the top-1 interval; all
    None when no image has a label (a task without labels in this split)."""
    if len(labels) == 0:
        return {**dict.fromkeys(METRIC_KEYS), "top1_ci95": [None, None]}
    correct = int((logits.argmax(dim=1) == labels).sum())
    return {
        **compute_metrics(logits, labels),
        "top1_ci95": list(wilson_interval(correct, len(labels))),
    }


def _identity(model: ArtClassifier) -> dict[str, Any]:
    hp = dict(model.hparams)
    return {
        **{k: hp.get(k) for k in ("experiment", "dataset", "challenge", "backbone", "mode")},
        "weights": None if hp.get("weights") is None else str(hp.get("weights")),
    }


def _provenance(model: ArtClassifier, leakage: dict[str, Any]) -> dict[str, Any]:
    return {
        "run_id": (model.provenance or {}).get("run_id"),
        "same_store_as_training": leakage["same_store_as_training"],
        "images_seen_in_training": leakage["seen"],
    }


def _metrics(
    model: ArtClassifier,
    logits: torch.Tensor,
    labels: torch.Tensor,
    source: dict[str, Any],
    leakage: dict[str, Any],
) -> dict[str, Any]:
    """metrics.json: what was evaluated (``source``: checkpoint, store file, split[, task]), the
    metrics by training's own definitions (one top-k rule), the top-1 interval, the leakage."""
    return {
        **source,
        "samples": len(labels),
        "num_classes": int(logits.shape[1]),
        **_identity(model),
        **_scores(logits, labels),
        **_provenance(model, leakage),
    }


def _evaluation(
    metrics: dict[str, Any],
    logits: torch.Tensor,
    labels: torch.Tensor,
    names: list[str],
    paths: list[str],
    out_dir: Path,
    index: np.ndarray | None = None,
) -> Evaluation:
    probs = logits.softmax(dim=1)
    return Evaluation(
        metrics=metrics,
        per_class=per_class_report(logits, labels, names),
        predictions=predictions_table(probs, labels, paths, names, index),
        out_dir=out_dir,
    )


def _write_folder(
    ev: Evaluation,
    outputs: tuple[torch.Tensor, torch.Tensor],
    images: ImageSource,
    figures: tuple[int, int],
    hp: dict[str, Any],
    task: str | None = None,
) -> None:
    """Write one evaluation folder (metrics.json, the CSVs, the figures, summary.md) from
    ``ev`` and the (logits, labels) it was computed from; ``figures`` = (top_n, mistakes)."""
    (logits, labels), out, names = outputs, ev.out_dir, ev.per_class["class"].tolist()
    probs = logits.softmax(dim=1)
    counts = confusion_counts(logits, labels)
    write_json_atomic(out / "metrics.json", json.loads(json.dumps(ev.metrics, default=str)))
    for name, frame, fmt in (
        ("per_class.csv", ev.per_class, "%.6f"),
        ("predictions.csv", ev.predictions, "%.6f"),
        ("confusion_matrix.csv", pd.DataFrame(counts, index=names, columns=names), None),
    ):
        with atomic_path(out / name) as tmp:
            frame.to_csv(tmp, index=name == "confusion_matrix.csv", float_format=fmt)
        ev.files.append(out / name)
    shown = plot_confusion(counts, names, out / "confusion_matrix.png", figures[0], task)
    ev.files.append(out / "confusion_matrix.png")
    wrong = confident_mistakes(probs, labels, figures[1])
    if wrong:
        plot_mistakes(images, wrong, probs, labels, names, out / "mistakes.png", task)
        ev.files.append(out / "mistakes.png")
    else:
        (out / "mistakes.png").unlink(missing_ok=True)  # from an earlier evaluation here
    write_text_atomic(out / "summary.md", _summary_md(ev, hp, shown, len(wrong), task))
    ev.files += [out / "metrics.json", out / "summary.md"]


def _stacked(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The tasks' tables one under the other, with a leading ``task`` column."""
    parts = [f.assign(task=t)[["task", *f.columns]] for t, f in frames.items()]
    return pd.concat(parts, ignore_index=True)


TASK_KEYS = ("samples", "unlabelled", "num_classes", *METRIC_KEYS, "top1_ci95")


def _evaluate_task(
    model: ArtClassifier,
    dataset: H5ImageDataset,
    task: str,
    outputs: tuple[torch.Tensor, torch.Tensor],
    context: tuple[dict[str, Any], dict[str, Any], Path, tuple[int, int]],
    all_paths: np.ndarray,
) -> Evaluation:
    """One task's folder, ``<out>/<task>/``: its columns of the logits over the images that have
    its label; ``context`` = (source, leakage, out, figures); ``all_paths``: the split's paths."""
    source, leakage, out, figures = context
    logits, labels = outputs
    column = model.task_names.index(task)  # type: ignore[union-attr]
    rows = torch.nonzero(labels[:, column] >= 0).flatten()
    task_logits = logits[rows][:, model.task_slices[task]]
    task_labels = labels[rows, column]
    metrics = _metrics(model, task_logits, task_labels, {**source, "task": task}, leakage)
    metrics["unlabelled"] = len(labels) - len(rows)
    paths = all_paths[rows.numpy()].tolist()
    names = model.task_classes[task]
    ev = _evaluation(metrics, task_logits, task_labels, names, paths, out / task, rows.numpy())
    images = TaskRows(dataset, rows.numpy())
    _write_folder(ev, (task_logits, task_labels), images, figures, dict(model.hparams), task)
    return ev


def _evaluate_tasks(
    model: ArtClassifier,
    dataset: H5ImageDataset,
    outputs: tuple[torch.Tensor, torch.Tensor],
    context: tuple[dict[str, Any], dict[str, Any], Path, tuple[int, int]],
) -> Evaluation:
    """A multi-task checkpoint: one folder per task (``_evaluate_task``), then the summary
    metrics.json / summary.md over all tasks; ``context`` = (source, leakage, out, figures)."""
    source, leakage, out, _ = context
    paths = np.array(dataset.paths(), dtype=object)  # read once for every task
    evs = {
        t: _evaluate_task(model, dataset, t, outputs, context, paths) for t in model.task_classes
    }
    per_task = {t: {k: e.metrics[k] for k in TASK_KEYS} for t, e in evs.items()}
    summary = {
        **source,
        "samples": len(outputs[1]),
        "tasks": list(evs),
        **_identity(model),
        **mean_record(per_task),  # like training's val/test numbers: the mean over tasks
        "per_task": per_task,
        **_provenance(model, leakage),
    }
    ev = Evaluation(
        summary,
        _stacked({t: e.per_class for t, e in evs.items()}),
        _stacked({t: e.predictions for t, e in evs.items()}),
        out,
        tasks=evs,
    )
    write_json_atomic(out / "metrics.json", json.loads(json.dumps(summary, default=str)))
    write_text_atomic(out / "summary.md", _tasks_summary_md(ev, dict(model.hparams)))
    ev.files = [f for e in evs.values() for f in e.files]
    ev.files += [out / "metrics.json", out / "summary.md"]
    return ev


def evaluate_checkpoint(
    ckpt: str | Path,
    out_dir: str | Path,
    split: str | None = None,
    store: str | Path | None = None,
    top_n: int = 30,
    mistakes: int = 16,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str = "auto",
    allow_other_store: bool = False,
) -> Evaluation:
    """Predict ``split`` of the checkpoint's store and write the whole evaluation folder (one
    per task, plus a summary, for a multi-task checkpoint: see the module docstring).

    ``split=None``: the test split, or the split a given ``.h5`` file holds. A store split
    differently from the checkpoint's is refused when it would test on training images,
    unless ``allow_other_store`` (then the overlap is reported).
    """
    if top_n < 1 or mistakes < 0:
        raise ConfigError(f"top_n={top_n} must be >= 1 and mistakes={mistakes} >= 0.")
    model = load_classifier(ckpt, device)
    path = resolve_split_file(model, store, split)
    split = str(read_attrs(path).get("split") or split or "test")  # what is really evaluated
    leakage = check_leakage(model, path, split, allow_other_store)
    dataset = H5ImageDataset(path, transform=model.eval_transform(), tasks=model.task_names)
    if len(dataset) == 0:
        raise ConfigError(f"store file {str(path)!r} holds no images; nothing to evaluate.")
    logits, labels = predict_logits(model, dataset, batch_size, num_workers)
    source = {"checkpoint": str(ckpt), "store_file": str(path), "split": split}
    out = Path(out_dir)
    if model.task_names is not None:
        context = (source, leakage, out, (top_n, mistakes))
        return _evaluate_tasks(model, dataset, (logits, labels), context)
    metrics = _metrics(model, logits, labels, source, leakage)
    ev = _evaluation(metrics, logits, labels, model.class_names, dataset.paths(), out)
    _write_folder(ev, (logits, labels), dataset, (top_n, mistakes), dict(model.hparams))
    return ev
