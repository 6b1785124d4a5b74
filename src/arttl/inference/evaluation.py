"""How good is a checkpoint, class by class: metrics, per-class report, confusion, mistakes.

Everything is computed from one pass of predictions over a store split, kept in
``predictions.csv``, so every number in the output folder can be recomputed from that file.
"""

from __future__ import annotations

import json
import math
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure  # not pyplot: no global state, the caller's backend untouched
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
    split_file,
)
from arttl.errors import ConfigError, choice_error
from arttl.inference.prediction import load_classifier
from arttl.inference.runner import STDERR, predict_batches, top_k_table
from arttl.models.classifier import ArtClassifier, compute_metrics
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
    names = read_class_names(path)
    if names != model.class_names:
        raise ConfigError(
            f"store file {str(path)!r} has classes {names[:5]}... ({len(names)}) but the "
            f"checkpoint was trained on {model.class_names[:5]}... ({len(model.class_names)}); "
            "pass the store the checkpoint was trained on (store.dir=...)."
        )
    return path


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
            message + f" Evaluate on the checkpoint's own store (store.dir="
            f"{model.hparams.get('store')}), or add allow_other_store=true to evaluate anyway "
            "(the counts are then written to metrics.json)."
        )
    STDERR.print(f"[bold red]warning[/bold red]: {message} (allow_other_store=true)")
    return out


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
    cm = MulticlassConfusionMatrix(num_classes=logits.shape[1])
    return cm(logits.argmax(dim=1), labels).numpy().astype(np.int64)


def plot_confusion(
    counts: np.ndarray, class_names: list[str], path: str | Path, top_n: int = 30
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
    ax.set_title("Confusion matrix, rows normalised" + subset)
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


def plot_mistakes(
    dataset: H5ImageDataset,
    indices: list[int],
    probs: torch.Tensor,
    labels: torch.Tensor,
    class_names: list[str],
    path: str | Path,
) -> None:
    """A grid of the stored images, titled true / predicted (probability)."""
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
    fig.suptitle("Most confident mistakes")
    _save(fig, path)


def _short(text: str, width: int) -> str:
    return textwrap.shorten(str(text), width=width, placeholder="…") or str(text)[:width]


def _save(fig: Figure, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)


def predictions_table(
    probs: torch.Tensor, labels: torch.Tensor, paths: list[str], class_names: list[str]
) -> pd.DataFrame:
    """One row per image: path, true label, top ranks (label_r, prob_r), prob of the true class."""
    names = np.array(class_names, dtype=object)
    table = pd.DataFrame({"index": np.arange(len(labels)), "path": paths})
    table["label"] = names[labels.numpy()]
    table = pd.concat([table, top_k_table(probs, class_names, TOP_K_SAVED)], axis=1)
    table["prob_true"] = probs.gather(1, labels[:, None]).squeeze(1).numpy()
    table["correct"] = table["label"] == table["label_1"]
    return table


@dataclass
class Evaluation:
    metrics: dict[str, Any]
    per_class: pd.DataFrame
    predictions: pd.DataFrame
    out_dir: Path
    files: list[Path] = field(default_factory=list)


def _summary_md(ev: Evaluation, hp: dict[str, Any], shown: list[str], mistakes: int) -> str:
    m = ev.metrics
    title = f"{hp.get('backbone')} / {hp.get('mode')} on {hp.get('dataset')}/{hp.get('challenge')}"
    lines = [
        f"# Evaluation: {title}",
        "",
        f"- checkpoint: `{m['checkpoint']}`",
        f"- split: `{m['split']}` of `{m['store_file']}` — {m['samples']} images, "
        f"{m['num_classes']} classes",
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
        value = m[key]
        lines.append(f"| {label} | {'—' if value is None else f'{100 * value:.2f} %'} |")
    lo, hi = m["top1_ci95"]
    lines.append(f"| top-1, 95 % Wilson interval | {100 * lo:.2f} – {100 * hi:.2f} % |")
    lines.append(f"| loss (cross-entropy) | {m['loss']:.4f} |")
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


def _metrics(
    model: ArtClassifier,
    logits: torch.Tensor,
    labels: torch.Tensor,
    source: dict[str, str],
    leakage: dict[str, Any],
) -> dict[str, Any]:
    """metrics.json: what was evaluated (``source``: checkpoint, store file, split), the
    metrics by training's own definitions (one top-k rule), the top-1 interval, the leakage."""
    hp = dict(model.hparams)
    metrics: dict[str, Any] = {
        **source,
        "samples": len(labels),
        "num_classes": len(model.class_names),
        **{k: hp.get(k) for k in ("experiment", "dataset", "challenge", "backbone", "mode")},
        "weights": None if hp.get("weights") is None else str(hp.get("weights")),
        **compute_metrics(logits, labels),
    }
    correct = int((logits.argmax(dim=1) == labels).sum())
    metrics["top1_ci95"] = list(wilson_interval(correct, len(labels)))
    metrics["run_id"] = (model.provenance or {}).get("run_id")
    metrics["same_store_as_training"] = leakage["same_store_as_training"]
    metrics["images_seen_in_training"] = leakage["seen"]
    return metrics


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
    """Predict ``split`` of the checkpoint's store and write the whole evaluation folder.

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
    dataset = H5ImageDataset(path, transform=model.eval_transform())
    if len(dataset) == 0:
        raise ConfigError(f"store file {str(path)!r} holds no images; nothing to evaluate.")
    logits, labels = predict_logits(model, dataset, batch_size, num_workers)
    probs = logits.softmax(dim=1)
    names = model.class_names
    hp = dict(model.hparams)
    ev = Evaluation(
        metrics=_metrics(
            model,
            logits,
            labels,
            {"checkpoint": str(ckpt), "store_file": str(path), "split": split},
            leakage,
        ),
        per_class=per_class_report(logits, labels, names),
        predictions=predictions_table(probs, labels, dataset.paths(), names),
        out_dir=Path(out_dir),
    )
    out = ev.out_dir
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
    shown = plot_confusion(counts, names, out / "confusion_matrix.png", top_n)
    ev.files.append(out / "confusion_matrix.png")
    wrong = confident_mistakes(probs, labels, mistakes)
    if wrong:
        plot_mistakes(dataset, wrong, probs, labels, names, out / "mistakes.png")
        ev.files.append(out / "mistakes.png")
    else:
        (out / "mistakes.png").unlink(missing_ok=True)  # from an earlier evaluation here
    write_text_atomic(out / "summary.md", _summary_md(ev, hp, shown, len(wrong)))
    ev.files += [out / "metrics.json", out / "summary.md"]
    return ev
