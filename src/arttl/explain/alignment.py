"""Putting the maps of several models on one grid, so they can be compared pixel by pixel.

Each model sees the image through its own eval transform (size, crop, normalisation), and
timm's centre crops of one image are nested squares: every map is cropped to the square all
models saw and resized to a shared size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from timm.data import DEFAULT_CROP_PCT

from arttl.explain.models import ExplainedModel

__all__ = ["Grid", "decode_side", "shared_grid", "to_common_grid"]


@dataclass
class Grid:
    """Where the compared maps meet: ``size`` (H, W), the crop fraction every model saw
    (None: not all models centre-crop a square, maps are only resized), the model whose view of
    the image is shown, and notes for the reader."""

    size: tuple[int, int]
    shared_fraction: float | None
    shown: int
    notes: list[str] = field(default_factory=list)

    def crop_fraction(self, model: ExplainedModel) -> float | None:
        """What of ``model``'s view to crop away (None: nothing, the crops are not aligned)."""
        return model.crop_fraction if self.shared_fraction is not None else None


def shared_grid(models: Sequence[ExplainedModel]) -> Grid:
    """The largest input side among the models, on the smallest crop any of them saw."""
    fractions = [m.crop_fraction for m in models]
    sizes = [m.input_size for m in models]
    if all(f is not None for f in fractions):
        shared = min(f for f in fractions if f is not None)
        side = max(h for h, _ in sizes)
        return Grid((side, side), shared, int(np.argmin(fractions)))
    note = (
        "not every model uses a square centre crop, so maps are resized to one grid without "
        "aligning the crops; regions near the border may not correspond."
    )
    return Grid(sizes[0], None, 0, [note])


def decode_side(models: Sequence[ExplainedModel]) -> int:
    """Shorter side to decode images at: the largest one any model resizes to before its crop
    (so no model upsamples a pre-shrunk image)."""
    return max(
        math.floor(m.input_size[0] / (m.data_config.get("crop_pct") or DEFAULT_CROP_PCT))
        for m in models
    )


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
