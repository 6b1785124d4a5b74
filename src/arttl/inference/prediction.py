"""Top-k labels for new images from a checkpoint alone (the ``label_image.py`` step of the study).

The checkpoint carries the class names, the backbone and its timm data config, so the same
decoding (``arttl.data.images.load_rgb``) and eval transform as at test time apply here.
Unreadable files are skipped and listed with their reason; they never stop the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from arttl.atomic import atomic_path, write_json_atomic
from arttl.data.images import ImageRejected, list_image_files, load_rgb
from arttl.errors import ConfigError
from arttl.inference.runner import predict_batches, resolve_device, top_k_table
from arttl.models.classifier import ArtClassifier

LIST_SUFFIXES = (".txt", ".lst", ".csv")


def load_classifier(ckpt: str | Path, device: str = "cpu") -> ArtClassifier:
    """``ArtClassifier.from_checkpoint`` with every failure turned into one ConfigError."""
    try:
        model = ArtClassifier.from_checkpoint(ckpt, map_location="cpu")
    except ConfigError:
        raise
    except Exception as err:  # EOFError, UnpicklingError, ... from a file that is not a checkpoint
        raise ConfigError(
            f"ckpt={str(ckpt)!r} is not an arttl checkpoint ({type(err).__name__}: {err}); "
            "use a .ckpt written by `python -m arttl.train` (checkpoints/<experiment>/...)."
        ) from err
    return model.to(resolve_device(device)).eval()


def _read_list(path: Path) -> list[Path]:
    """Paths from a .txt/.lst (one per line, # comments) or .csv (a ``path`` column)."""
    if path.suffix.lower() == ".csv":
        df = pd.read_csv(path)
        if "path" not in df:
            raise ConfigError(f"input={str(path)!r}: a CSV list needs a 'path' column.")
        entries = df["path"].dropna().astype(str).tolist()
    else:
        lines = path.read_text(encoding="utf-8").splitlines()
        entries = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    # Relative entries are relative to the list file, so a list travels with its images.
    return [p if p.is_absolute() else path.parent / p for p in map(Path, entries)]


def gather_inputs(spec: str | Path | Sequence[str | Path]) -> list[Path]:
    """Image files named by ``spec``: an image, a folder, a list file, or a list of these.

    A folder is listed by ``arttl.data.images.list_image_files`` (recursive, hidden files and
    certain non-images left out). Entries of a list file that do not exist are kept, so they
    are reported as skipped; a path given directly that does not exist is an error.
    """
    specs = [spec] if isinstance(spec, str | Path) else list(spec)
    if not specs:
        raise ConfigError("input=[] names no image; give a file, a folder or a list file.")
    found: list[Path] = []
    for item in specs:
        path = Path(str(item)).expanduser()
        if path.is_dir():
            images = list_image_files(path)
            if not images:
                raise ConfigError(
                    f"input={str(path)!r}: no image files in this folder or below (hidden "
                    "files and non-image extensions such as .txt are left out)."
                )
            found += images
        elif path.is_file():
            found += _read_list(path) if path.suffix.lower() in LIST_SUFFIXES else [path]
        else:
            raise ConfigError(f"input={str(path)!r} does not exist.")
    return list(dict.fromkeys(found))


class ImageFiles(Dataset):
    """Decoded, transformed images; a file that fails yields ``(None, index, reason)``."""

    def __init__(
        self, paths: Sequence[Path], transform: Callable, shorter_side: int | None = None
    ) -> None:
        self.paths = list(paths)
        self.transform = transform
        self.shorter_side = shorter_side

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor | None, int, str]:
        try:
            img = load_rgb(self.paths[index], shorter_side=self.shorter_side)
        except ImageRejected as err:
            return None, index, err.reason
        return self.transform(img), index, ""


Batch = tuple[torch.Tensor | None, list[int], list[tuple[int, str]]]


def _collate(items: list[tuple[torch.Tensor | None, int, str]]) -> Batch:
    """(images of the readable files or None, their indices, (index, reason) of the others)."""
    ok = [(x, i) for x, i, _ in items if x is not None]
    images = torch.stack([x for x, _ in ok]) if ok else None
    return images, [i for _, i in ok], [(i, reason) for x, i, reason in items if x is None]


@dataclass
class Predictions:
    """``table``: path, label_1, prob_1, ... label_k, prob_k; ``rejected``: path, reason.

    A multi-task checkpoint has one group of columns per task, in task order,
    ``<task>_label_1, <task>_prob_1, ...``, each task's probabilities a softmax over its own
    classes and its ranks capped at its class count: ``task_k`` (task -> ranks; None for a
    one-task checkpoint), ``top_k`` the most ranks of any task."""

    table: pd.DataFrame
    rejected: pd.DataFrame
    top_k: int
    task_k: dict[str, int] | None = None

    def ranks(self, values: dict[str, Any], prefix: str = "", k: int | None = None) -> list:
        """[{label, prob}, ...] of one row (``values``), for one task's ``<task>_`` columns."""
        return [
            {"label": values[f"{prefix}label_{r}"], "prob": float(values[f"{prefix}prob_{r}"])}
            for r in range(1, (k or self.top_k) + 1)
        ]

    def records(self) -> list[dict[str, Any]]:
        """One JSON record per image: ``top_k`` ranks, or per task (``tasks``: task -> ranks)."""
        out = []
        for values in self.table.to_dict(orient="records"):
            if self.task_k is None:
                out.append({"path": values["path"], "top_k": self.ranks(values)})
                continue
            tasks = {t: self.ranks(values, f"{t}_", k) for t, k in self.task_k.items()}
            out.append({"path": values["path"], "tasks": tasks})
        return out


def rank_columns(model: ArtClassifier, probs: torch.Tensor, top_k: int) -> pd.DataFrame:
    """label_r / prob_r columns; for a multi-task checkpoint one ``<task>_`` group per task,
    ranked within the task's own columns of ``probs`` (a softmax per task)."""
    if model.task_names is None:
        return top_k_table(probs, model.class_names, top_k)
    groups = [
        top_k_table(probs[:, cols], model.task_classes[task], top_k).add_prefix(f"{task}_")
        for task, cols in model.task_slices.items()
    ]
    return pd.concat(groups, axis=1)


def predict_images(
    model: ArtClassifier,
    paths: Sequence[Path],
    top_k: int = 5,
    batch_size: int = 32,
    num_workers: int = 0,
    shorter_side: int | None = None,
) -> Predictions:
    """Batched top-k probabilities for ``paths`` with the checkpoint's eval transform (through
    ``predict_batches``, like evaluate); unreadable files go to ``rejected`` with their reason."""
    if top_k < 1:
        raise ConfigError(f"top_k={top_k} must be at least 1.")
    loader = DataLoader(
        ImageFiles(paths, model.eval_transform(), shorter_side),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=_collate,
    )
    kept: list[int] = []
    probs: list[torch.Tensor] = []
    rejected: list[dict[str, str]] = []
    for (_, index, failed), out in predict_batches(model, loader, output="probs"):
        rejected += [{"path": str(paths[i]), "reason": r} for i, r in failed]
        if out is not None:
            kept += index
            probs.append(out)
    width = int(model.head.out_features)
    all_probs = torch.cat(probs) if probs else torch.empty(0, width)
    ranks = rank_columns(model, all_probs, top_k)
    table = pd.concat([pd.DataFrame({"path": [str(paths[i]) for i in kept]}), ranks], axis=1)
    task_k = None
    if model.task_names is not None:
        task_k = {t: min(top_k, len(names)) for t, names in model.task_classes.items()}
    return Predictions(
        table=table,
        rejected=pd.DataFrame(rejected, columns=["path", "reason"]),
        top_k=max(task_k.values()) if task_k else ranks.shape[1] // 2,  # capped at the classes
        task_k=task_k,
    )


def write_predictions(
    result: Predictions, out_dir: str | Path, meta: dict[str, Any] | None = None
) -> list[Path]:
    """predictions.csv, predictions.json (with the skipped files) and rejected.csv, atomically."""
    out_dir = Path(out_dir)
    csv_path, json_path, rejected_path = (
        out_dir / "predictions.csv",
        out_dir / "predictions.json",
        out_dir / "rejected.csv",
    )
    with atomic_path(csv_path) as tmp:
        result.table.to_csv(tmp, index=False, float_format="%.6f")
    with atomic_path(rejected_path) as tmp:
        result.rejected.to_csv(tmp, index=False)
    write_json_atomic(
        json_path,
        {
            **(meta or {}),
            "top_k": result.top_k,
            **({"tasks": result.task_k} if result.task_k is not None else {}),
            "predictions": result.records(),
            "rejected": result.rejected.to_dict(orient="records"),
        },
    )
    return [csv_path, json_path, rejected_path]
