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
from rich.console import Console
from rich.progress import track
from torch.utils.data import DataLoader, Dataset

from arttl.atomic import atomic_path, write_json_atomic
from arttl.data.images import ImageRejected, load_rgb
from arttl.errors import ConfigError
from arttl.models.classifier import ArtClassifier

IMAGE_SUFFIXES = (
    ".jpg",
    ".jpeg",
    ".jpe",
    ".jfif",
    ".png",
    ".tif",
    ".tiff",
    ".bmp",
    ".webp",
    ".gif",
)
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


def resolve_device(device: str | None) -> torch.device:
    """``auto`` (or None) = the GPU when there is one."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise ConfigError(f"device={device!r} is not valid; use auto, cpu or cuda[:N].") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r}: CUDA is not available here; use device=cpu.")
    return dev


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
    """Image files named by ``spec``: an image, a folder (recursive), a list file, or a list.

    Entries of a list file that do not exist are kept, so they are reported as skipped; a
    path given directly that does not exist is an error.
    """
    specs = [spec] if isinstance(spec, str | Path) else list(spec)
    if not specs:
        raise ConfigError("input=[] names no image; give a file, a folder or a list file.")
    found: list[Path] = []
    for item in specs:
        path = Path(str(item)).expanduser()
        if path.is_dir():
            images = sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
            if not images:
                raise ConfigError(
                    f"input={str(path)!r}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this "
                    "folder or below."
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


def _collate(items: list[tuple[torch.Tensor | None, int, str]]) -> dict[str, Any]:
    ok = [(x, i) for x, i, _ in items if x is not None]
    return {
        "images": torch.stack([x for x, _ in ok]) if ok else None,
        "index": [i for _, i in ok],
        "rejected": [(i, reason) for x, i, reason in items if x is None],
    }


@dataclass
class Predictions:
    """``table``: path, label_1, prob_1, ... label_k, prob_k; ``rejected``: path, reason."""

    table: pd.DataFrame
    rejected: pd.DataFrame
    top_k: int

    def records(self) -> list[dict[str, Any]]:
        out = []
        for row in self.table.itertuples(index=False):
            values = row._asdict()
            out.append(
                {
                    "path": values["path"],
                    "top_k": [
                        {"label": values[f"label_{r}"], "prob": float(values[f"prob_{r}"])}
                        for r in range(1, self.top_k + 1)
                    ],
                }
            )
        return out


@torch.inference_mode()
def predict_images(
    model: ArtClassifier,
    paths: Sequence[Path],
    top_k: int = 5,
    batch_size: int = 32,
    num_workers: int = 0,
    shorter_side: int | None = None,
) -> Predictions:
    """Batched top-k probabilities for ``paths`` with the checkpoint's eval transform."""
    if top_k < 1:
        raise ConfigError(f"top_k={top_k} must be at least 1.")
    k = min(int(top_k), len(model.class_names))
    device = next(model.parameters()).device
    loader = DataLoader(
        ImageFiles(paths, model.eval_transform(), shorter_side),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=_collate,
    )
    names = model.class_names
    rows: list[dict[str, Any]] = []
    rejected: list[dict[str, str]] = []
    progress = Console(stderr=True)  # stdout stays for the results table
    for batch in track(loader, "predicting", len(loader), transient=True, console=progress):
        rejected += [{"path": str(paths[i]), "reason": r} for i, r in batch["rejected"]]
        if batch["images"] is None:
            continue
        probs = model.predict_proba(batch["images"].to(device)).cpu()
        top_p, top_i = probs.topk(k, dim=1)
        for index, p_row, i_row in zip(batch["index"], top_p.tolist(), top_i.tolist(), strict=True):
            row: dict[str, Any] = {"path": str(paths[index])}
            for rank, (p, i) in enumerate(zip(p_row, i_row, strict=True), start=1):
                row[f"label_{rank}"] = names[i]
                row[f"prob_{rank}"] = p
            rows.append(row)
    columns = ["path"] + [f"{c}_{r}" for r in range(1, k + 1) for c in ("label", "prob")]
    return Predictions(
        table=pd.DataFrame(rows, columns=columns),
        rejected=pd.DataFrame(rejected, columns=["path", "reason"]),
        top_k=k,
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
            "predictions": result.records(),
            "rejected": result.rejected.to_dict(orient="records"),
        },
    )
    return [csv_path, json_path, rejected_path]
