"""Saliency maps of several models on the same images, and how much they agree.

The paper's claim is that fine-tuning on art changes *where* a network looks. Looking at two
maps side by side is not a measurement, so every image also gets numbers:

- Spearman rank correlation of the two maps (1 = same ordering of pixels by importance);
- IoU of the top ``top_fraction`` most salient pixels of each map (do they point at the same
  region?);
- a faithfulness check per model (deletion curve): the probability of the explained class as
  the most salient pixels are replaced by the mean colour first, against replacing random
  pixels. A map that says something about the network falls faster than random (lower area).

Maps are compared on one grid: each model sees the image through its own eval transform
(size, crop, normalisation), and timm's centre crops of one image are nested squares, so every
map is cropped to the square all models saw and resized to a shared size.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import stats
from torch import nn

from arttl.atomic import atomic_path
from arttl.errors import ConfigError
from arttl.explain.methods import attribution_mode, check_method, explain, resolve_layer
from arttl.explain.models import ExplainedModel

__all__ = [
    "Comparison",
    "ImageResult",
    "ModelResult",
    "agreement_table",
    "auc",
    "compare_models",
    "deletion_curve",
    "list_images",
    "random_deletion_curve",
    "spearman",
    "to_common_grid",
    "top_iou",
    "write_agreement_csv",
]

log = logging.getLogger(__name__)

ImageInput = str | Path | Image.Image | tuple[str, Image.Image]


# -- agreement metrics ---------------------------------------------------------------------------
def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps of the same shape (NaN if one map is flat)."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"maps differ in size: {a.shape} vs {b.shape}")
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(stats.spearmanr(a, b).statistic)


def top_mask(a: np.ndarray, fraction: float = 0.1) -> np.ndarray:
    """Boolean mask of the ``fraction`` most salient pixels (exactly ceil(fraction * N) of them)."""
    if not 0 < fraction <= 1:
        raise ConfigError(f"top_fraction={fraction} must be in (0, 1].")
    flat = np.asarray(a, dtype=np.float64).ravel()
    k = max(1, math.ceil(fraction * flat.size))
    mask = np.zeros(flat.size, dtype=bool)
    mask[np.argsort(-flat, kind="stable")[:k]] = True
    return mask.reshape(np.shape(a))


def top_iou(a: np.ndarray, b: np.ndarray, fraction: float = 0.1) -> float:
    """Intersection over union of the two maps' top-``fraction`` pixels."""
    ma, mb = top_mask(a, fraction), top_mask(b, fraction)
    return float((ma & mb).sum() / (ma | mb).sum())


def auc(curve: np.ndarray) -> float:
    """Area under a deletion curve sampled at evenly spaced removed fractions 0..1."""
    curve = np.asarray(curve, dtype=np.float64)
    if curve.size < 2:
        return float("nan")
    return float(np.trapezoid(curve, dx=1.0 / (curve.size - 1)))


def _salient_order(saliency: np.ndarray, seed: int) -> np.ndarray:
    """Pixel indices, most salient first; ties in random order (flat regions are common)."""
    flat = np.asarray(saliency, dtype=np.float64).ravel()
    jitter = np.random.default_rng(seed).random(flat.size)
    return np.lexsort((jitter, -flat))


@torch.no_grad()
def deletion_curve(
    model: nn.Module,
    x: torch.Tensor,
    saliency: np.ndarray | None,
    target: int,
    steps: int = 10,
    *,
    order: np.ndarray | None = None,
    batch_size: int = 16,
    seed: int = 0,
) -> np.ndarray:
    """Probability of ``target`` after removing 0, 1/steps, ..., all pixels, most salient first.

    ``x`` is one normalised image (1, 3, H, W); removed pixels become 0, the normalisation
    mean (a neutral grey-ish colour, the same baseline integrated_gradients uses). ``order``
    overrides the saliency ranking (used for random deletion).
    """
    if steps < 1:
        raise ConfigError(f"deletion_steps={steps} must be >= 1 (or 0 to skip the check).")
    x = x if x.ndim == 4 else x.unsqueeze(0)
    h, w = x.shape[-2:]
    n = h * w
    if order is None:
        if saliency is None or np.shape(saliency) != (h, w):
            raise ValueError(f"saliency must be a {(h, w)} map, got {np.shape(saliency)}")
        order = _salient_order(saliency, seed)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    rank_t = torch.from_numpy(rank).view(1, 1, h, w).to(x.device)
    counts = np.round(np.linspace(0.0, 1.0, steps + 1) * n).astype(np.int64)
    probs: list[np.ndarray] = []
    with attribution_mode(model):
        for start in range(0, len(counts), batch_size):
            chunk = torch.as_tensor(counts[start : start + batch_size], device=x.device)
            keep = (rank_t >= chunk.view(-1, 1, 1, 1)).to(x.dtype)
            out = model(x * keep).float().softmax(dim=-1)[:, target]
            probs.append(out.cpu().numpy())
    return np.concatenate(probs)


def random_deletion_curve(
    model: nn.Module,
    x: torch.Tensor,
    target: int,
    steps: int = 10,
    repeats: int = 3,
    seed: int = 0,
    batch_size: int = 16,
) -> np.ndarray:
    """The deletion curve for random pixel orders (mean of ``repeats``): the chance level."""
    h, w = x.shape[-2:]
    rng = np.random.default_rng(seed)
    curves = [
        deletion_curve(
            model, x, None, target, steps, order=rng.permutation(h * w), batch_size=batch_size
        )
        for _ in range(max(1, repeats))
    ]
    return np.mean(curves, axis=0)


# -- putting maps on one grid --------------------------------------------------------------------
def _resize(a: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(a.shape[-2:]) == tuple(size):
        return a
    return F.interpolate(a, size=size, mode="bilinear", align_corners=False, antialias=True)


def to_common_grid(
    a: np.ndarray | torch.Tensor,
    size: tuple[int, int],
    crop_fraction: float | None = None,
    shared_fraction: float | None = None,
) -> np.ndarray:
    """A map (H, W) or image (H, W, C) cropped to the shared centre square, resized to ``size``.

    ``crop_fraction`` is the part of the image's shorter side this model saw and
    ``shared_fraction`` the smallest such part among the compared models (see
    ``ExplainedModel.crop_fraction``); without them the array is only resized.
    """
    arr = torch.as_tensor(np.asarray(a), dtype=torch.float32)
    chw = arr.permute(2, 0, 1) if arr.ndim == 3 else arr.unsqueeze(0)
    if crop_fraction and shared_fraction and shared_fraction < crop_fraction:
        keep = shared_fraction / crop_fraction
        h, w = chw.shape[-2:]
        ch, cw = max(1, round(h * keep)), max(1, round(w * keep))
        top, left = (h - ch) // 2, (w - cw) // 2
        chw = chw[:, top : top + ch, left : left + cw]
    out = _resize(chw.unsqueeze(0), size)[0]
    return (out.permute(1, 2, 0) if arr.ndim == 3 else out[0]).numpy()


# -- results -----------------------------------------------------------------------------------
@dataclass
class ModelResult:
    """One model on one image: its prediction, its map (shared grid and own grid), faithfulness."""

    model: str
    target: int
    label: str
    probability: float
    map: np.ndarray
    native_map: np.ndarray
    deletion: np.ndarray | None = None
    random_deletion: np.ndarray | None = None

    @property
    def deletion_auc(self) -> float:
        return auc(self.deletion) if self.deletion is not None else float("nan")

    @property
    def random_auc(self) -> float:
        return auc(self.random_deletion) if self.random_deletion is not None else float("nan")


@dataclass
class ImageResult:
    name: str
    path: str
    image: np.ndarray  # (H, W, 3) uint8 on the shared grid
    results: list[ModelResult]


@dataclass
class Comparison:
    """Everything ``compare_models`` computed: figures, CSV and .npz are written from this."""

    method: str
    model_names: list[str]
    images: list[ImageResult]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    top_fraction: float = 0.1
    deletion_steps: int = 10
    notes: list[str] = field(default_factory=list)
    target: int | str | None = None  # what was asked for; None = each model's top-1 class

    @property
    def agreement(self) -> pd.DataFrame:
        return agreement_table(self)


def agreement_table(comparison: Comparison) -> pd.DataFrame:
    """One row per image and pair of models (one row per image when there is only one model)."""
    rows: list[dict[str, Any]] = []
    for img in comparison.images:
        pairs: Iterable[tuple[ModelResult, ModelResult | None]]
        if len(img.results) > 1:
            pairs = itertools.combinations(img.results, 2)
        else:
            pairs = [(img.results[0], None)]
        for a, b in pairs:
            row: dict[str, Any] = {
                "image": img.name,
                "method": comparison.method,
                "model_a": a.model,
                "model_b": b.model if b else None,
                "label_a": a.label,
                "prob_a": a.probability,
                "label_b": b.label if b else None,
                "prob_b": b.probability if b else float("nan"),
                "spearman": spearman(a.map, b.map) if b else float("nan"),
                "top_iou": top_iou(a.map, b.map, comparison.top_fraction) if b else float("nan"),
                "top_fraction": comparison.top_fraction,
            }
            for suffix, r in (("a", a), ("b", b)):
                del_auc = r.deletion_auc if r else float("nan")
                rnd_auc = r.random_auc if r else float("nan")
                row[f"deletion_auc_{suffix}"] = del_auc
                row[f"random_auc_{suffix}"] = rnd_auc
                known = np.isfinite(del_auc) and np.isfinite(rnd_auc)
                row[f"faithful_{suffix}"] = bool(del_auc < rnd_auc) if known else None
            rows.append(row)
    columns = [
        "image", "method", "model_a", "model_b", "label_a", "prob_a", "label_b", "prob_b",
        "spearman", "top_iou", "top_fraction", "deletion_auc_a", "random_auc_a", "faithful_a",
        "deletion_auc_b", "random_auc_b", "faithful_b",
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def write_agreement_csv(comparison: Comparison, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        agreement_table(comparison).to_csv(tmp, index=False, float_format="%.6g")
    return path


# -- running it ----------------------------------------------------------------------------------
def list_images(
    source: str | Path | Sequence[str | Path], max_images: int | None = None
) -> list[Path]:
    """Image files from a file, a folder (its non-hidden files, sorted) or a list of either.

    Every file of a folder is tried, not only known extensions: one that does not decode is
    reported with its reason instead of being passed over silently.
    """
    if source is None or (isinstance(source, str) and not source.strip()):
        raise ConfigError(
            "images is not set; give an image file or folder, e.g. "
            "images=../shared/data/rijks_figures"
        )
    sources = [source] if isinstance(source, str | Path) else list(source)
    paths: list[Path] = []
    for s in sources:
        p = Path(str(s)).expanduser()
        if p.is_dir():
            paths.extend(
                sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith("."))
            )
        elif p.is_file():
            paths.append(p)
        else:
            raise ConfigError(f"images={str(s)!r}: no such file or folder.")
    if not paths:
        raise ConfigError(f"images={source!s}: no files found.")
    if max_images is not None and max_images > 0:
        paths = paths[:max_images]
    return paths


def _load(item: ImageInput, index: int, shorter_side: int | None) -> tuple[str, str, Image.Image]:
    from arttl.data.images import load_rgb

    if isinstance(item, tuple):
        name, img = item
        return str(name), "", img.convert("RGB")
    if isinstance(item, Image.Image):
        return f"image_{index}", "", item.convert("RGB")
    path = Path(item)
    return path.name, str(path), load_rgb(path, shorter_side=shorter_side)


def _grid(models: Sequence[ExplainedModel]) -> tuple[tuple[int, int], float | None, int, list[str]]:
    """Shared size, shared crop fraction, the model whose view is shown, and notes."""
    fractions = [m.crop_fraction for m in models]
    sizes = [m.input_size for m in models]
    notes: list[str] = []
    if all(f is not None for f in fractions):
        shared = min(f for f in fractions if f is not None)
        side = max(h for h, _ in sizes)
        return (side, side), shared, int(np.argmin(fractions)), notes
    notes.append(
        "not every model uses a square centre crop, so maps are resized to one grid without "
        "aligning the crops; regions near the border may not correspond."
    )
    return sizes[0], None, 0, notes


def compare_models(
    models: Sequence[ExplainedModel],
    images: ImageInput | Sequence[ImageInput],
    method: str = "visual_backprop",
    target: int | str | None = None,
    top_fraction: float = 0.1,
    deletion_steps: int = 10,
    deletion_random: int = 3,
    method_options: dict[str, Any] | None = None,
    max_images: int | None = None,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> Comparison:
    """Explain every image with every model; undecodable images are listed in ``skipped``.

    ``images``: paths, a folder, PIL images or (name, PIL image) pairs. ``target``: None for
    each model's top-1 class, or a class index/name. ``deletion_steps=0`` skips the
    faithfulness check (it costs (1 + deletion_random) * (steps + 1) forward passes per map).
    """
    models = list(models)
    if not models:
        raise ConfigError("models is empty; give at least one model.")
    options = dict(method_options or {})
    check_method(method, options)
    if not 0 < top_fraction <= 1:
        raise ConfigError(f"top_fraction={top_fraction} must be in (0, 1].")
    if deletion_steps < 0:
        raise ConfigError(f"deletion_steps={deletion_steps} must be >= 0 (0 skips the check).")
    targets = [m.resolve_target(target) for m in models]
    if method == "gradcam":  # a missing layer fails here, before any image is processed
        for m in models:
            resolve_layer(m.module, options.get("layer"))
    if isinstance(images, str | Path) and Path(images).is_dir():
        items: list[ImageInput] = list(list_images(images, max_images))
    elif isinstance(images, str | Path | Image.Image) or (
        isinstance(images, tuple) and len(images) == 2 and isinstance(images[1], Image.Image)
    ):
        items = [images]
    else:
        items = list(images)
    if max_images is not None and max_images > 0:
        items = items[:max_images]
    size, shared, shown, notes = _grid(models)
    shorter_side = max(
        math.floor(m.input_size[0] / (m.data_config.get("crop_pct") or 0.875)) for m in models
    )
    say = progress or log.info
    comparison = Comparison(
        method=method,
        model_names=[m.name for m in models],
        images=[],
        top_fraction=top_fraction,
        deletion_steps=deletion_steps,
        notes=notes,
        target=None if all(t is None for t in targets) else target,
    )
    for index, item in enumerate(items):
        try:
            name, path, img = _load(item, index, shorter_side)
        except Exception as err:  # ImageRejected, or a PIL object that will not convert
            name = Path(str(item)).name if isinstance(item, str | Path) else f"image_{index}"
            reason = getattr(err, "reason", None) or f"{type(err).__name__}: {err}"
            comparison.skipped.append((name, reason))
            if progress is not None:
                progress(f"skipped image {name}: {reason}")
            else:
                log.warning("skipped image %s: %s", name, reason)
            continue
        results: list[ModelResult] = []
        display: np.ndarray | None = None
        for i, (m, t) in enumerate(zip(models, targets, strict=True)):
            pixels, x = m.preprocess(img)
            e = explain(m.module, x, method, target=t, **options)
            fraction = m.crop_fraction if shared is not None else None
            result = ModelResult(
                model=m.name,
                target=e.target,
                label=m.label(e.target),
                probability=e.probability,
                map=to_common_grid(e.map, size, fraction, shared),
                native_map=e.map,
            )
            if deletion_steps:
                result.deletion = deletion_curve(
                    m.module, x, e.map, e.target, deletion_steps, seed=seed
                )
                result.random_deletion = random_deletion_curve(
                    m.module, x, e.target, deletion_steps, deletion_random, seed=seed
                )
            if i == shown:
                view = pixels.permute(1, 2, 0).numpy()
                display = np.clip(to_common_grid(view, size), 0, 255).round().astype(np.uint8)
            results.append(result)
        assert display is not None
        comparison.images.append(ImageResult(name, path, display, results))
        say(f"explained {name} with {len(models)} model(s)")
    return comparison
