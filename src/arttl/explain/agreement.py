"""The numbers behind a saliency comparison: do two maps agree, and does a map say anything?

Looking at two maps side by side is not a measurement, so every image also gets:

- Spearman rank correlation of the two maps (1 = same ordering of pixels by importance);
- IoU of the top ``top_fraction`` most salient pixels of each map (do they point at the same
  region?);
- a faithfulness check per model (deletion curve): the probability of the explained class as
  the most salient pixels are replaced by the mean colour first, against replacing random
  pixels. A map that says something about the network falls faster than random (lower area).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from scipy import stats
from torch import nn

from arttl.atomic import atomic_path
from arttl.errors import ConfigError
from arttl.explain.methods import attribution_mode

if TYPE_CHECKING:
    from arttl.explain.compare import Comparison, ModelResult

__all__ = [
    "AGREEMENT_COLUMNS",
    "agreement_table",
    "auc",
    "deletion_curve",
    "random_deletion_curve",
    "spearman",
    "top_iou",
    "top_mask",
    "write_agreement_csv",
]

AGREEMENT_COLUMNS = [
    "image", "method", "model_a", "model_b", "label_a", "prob_a", "label_b", "prob_b",
    "spearman", "top_iou", "top_fraction", "deletion_auc_a", "random_auc_a", "faithful_a",
    "deletion_auc_b", "random_auc_b", "faithful_b",
]  # fmt: skip


# -- two maps ------------------------------------------------------------------------------------
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


# -- one map's faithfulness ----------------------------------------------------------------------
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


# -- the table -----------------------------------------------------------------------------------
def _faithfulness(result: ModelResult | None, suffix: str) -> dict[str, Any]:
    """deletion_auc_<suffix>, random_auc_<suffix> and faithful_<suffix> (None when unknown)."""
    del_auc = result.deletion_auc if result else float("nan")
    rnd_auc = result.random_auc if result else float("nan")
    known = np.isfinite(del_auc) and np.isfinite(rnd_auc)
    return {
        f"deletion_auc_{suffix}": del_auc,
        f"random_auc_{suffix}": rnd_auc,
        f"faithful_{suffix}": bool(del_auc < rnd_auc) if known else None,
    }


def _pair_row(
    image: str, method: str, fraction: float, a: ModelResult, b: ModelResult | None
) -> dict[str, Any]:
    nan = float("nan")
    return {
        "image": image,
        "method": method,
        "model_a": a.model,
        "model_b": b.model if b else None,
        "label_a": a.label,
        "prob_a": a.probability,
        "label_b": b.label if b else None,
        "prob_b": b.probability if b else nan,
        "spearman": spearman(a.map, b.map) if b else nan,
        "top_iou": top_iou(a.map, b.map, fraction) if b else nan,
        "top_fraction": fraction,
        **_faithfulness(a, "a"),
        **_faithfulness(b, "b"),
    }


def agreement_table(comparison: Comparison) -> pd.DataFrame:
    """One row per image and pair of models (one row per image when there is only one model)."""
    rows: list[dict[str, Any]] = []
    for img in comparison.images:
        pairs: Iterable[tuple[ModelResult, ModelResult | None]]
        if len(img.results) > 1:
            pairs = itertools.combinations(img.results, 2)
        else:
            pairs = [(img.results[0], None)]
        rows += [
            _pair_row(img.name, comparison.method, comparison.top_fraction, a, b) for a, b in pairs
        ]
    return pd.DataFrame(rows, columns=AGREEMENT_COLUMNS)


def write_agreement_csv(comparison: Comparison, path: str | Path) -> Path:
    """The agreement table as CSV (written atomically: a half-written file never appears)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        agreement_table(comparison).to_csv(tmp, index=False, float_format="%.6g")
    return path
