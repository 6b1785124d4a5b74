"""The comparison figure (rows = images, columns = the image and one map per model) and files.

Figures are built on ``matplotlib.figure.Figure`` directly, not pyplot: no global state, no
GUI backend needed on a server, and a notebook shows the returned figure as it is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from arttl.atomic import atomic_path
from arttl.explain.compare import Comparison, write_agreement_csv

__all__ = ["comparison_figure", "display_scale", "output_paths", "save_figure", "save_maps",
           "write_outputs"]  # fmt: skip


def display_scale(a: np.ndarray, percentile: float = 99.5) -> np.ndarray:
    """Map values to [0, 1] for display; the top ``100 - percentile`` % saturate so that a few
    extreme gradient pixels do not turn the rest of the map black."""
    a = np.nan_to_num(np.asarray(a, dtype=np.float64))
    lo = float(a.min())
    hi = float(np.percentile(a, percentile))
    if hi <= lo:
        hi = float(a.max())
    if hi <= lo:
        return np.zeros_like(a)
    return np.clip((a - lo) / (hi - lo), 0.0, 1.0)


def _short(text: str, width: int = 28) -> str:
    return text if len(text) <= width else text[: width // 2 - 1] + "…" + text[-(width // 2) :]


def comparison_figure(
    comparison: Comparison,
    overlay: bool = True,
    cmap: str = "jet",
    alpha: float = 0.5,
    cell_inches: float = 2.6,
) -> Figure:
    """Rows = images; columns = the image, then each model's map titled with its name and its
    top-1 (or explained) label and probability. ``overlay=False`` shows the maps alone."""
    if not comparison.images:
        raise ValueError("no image was explained, so there is nothing to draw")
    n_rows, n_cols = len(comparison.images), 1 + len(comparison.model_names)
    fig = Figure(figsize=(cell_inches * n_cols, cell_inches * n_rows + 0.5), layout="constrained")
    axes = np.atleast_2d(fig.subplots(n_rows, n_cols, squeeze=False))
    for row, img in enumerate(comparison.images):
        ax = axes[row, 0]
        ax.imshow(img.image)
        ax.set_title(_short(img.name), fontsize=9)
        for col, res in enumerate(img.results, start=1):
            ax = axes[row, col]
            shown = display_scale(res.map)
            if overlay:
                # Opacity follows saliency, so the artwork stays visible where the map is low.
                rgba = colormaps[cmap](shown)
                rgba[..., 3] = alpha * np.sqrt(shown)
                ax.imshow(img.image)
                ax.imshow(rgba)
            else:
                ax.imshow(shown, cmap=cmap, vmin=0.0, vmax=1.0)
            ax.set_title(f"{_short(res.model)}\n{_short(res.label)} ({res.probability:.0%})",
                         fontsize=8)  # fmt: skip
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.suptitle(f"{comparison.method} saliency", fontsize=11)
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int = 120) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return path


def save_maps(comparison: Comparison, path: str | Path) -> Path:
    """The raw maps on the shared grid, with what produced them, as one ``.npz``.

    Arrays: ``images`` (N, H, W, 3) uint8, ``maps`` (N, M, H, W) float32, ``image_names`` (N,),
    ``model_names`` (M,), ``targets``/``labels``/``probabilities`` (N, M), ``method``,
    ``deletion``/``random_deletion`` (N, M, steps + 1; empty when the check was skipped).
    Strings are stored as unicode arrays, so ``np.load`` needs no pickle.
    """
    path = Path(path)
    imgs = comparison.images
    steps = comparison.deletion_steps

    def curves(kind: str) -> np.ndarray:
        if not steps:
            return np.zeros((len(imgs), len(comparison.model_names), 0), dtype=np.float32)
        return np.array(
            [[getattr(r, kind) for r in im.results] for im in imgs], dtype=np.float32
        ).reshape(len(imgs), len(comparison.model_names), steps + 1)

    arrays = {
        "images": np.stack([im.image for im in imgs]) if imgs else np.zeros((0, 0, 0, 3), np.uint8),
        "maps": np.array([[r.map for r in im.results] for im in imgs], dtype=np.float32),
        "image_names": np.array([im.name for im in imgs], dtype=str),
        "model_names": np.array(comparison.model_names, dtype=str),
        "targets": np.array([[r.target for r in im.results] for im in imgs], dtype=np.int64),
        "labels": np.array([[r.label for r in im.results] for im in imgs], dtype=str),
        "probabilities": np.array(
            [[r.probability for r in im.results] for im in imgs], dtype=np.float32
        ),
        "method": np.array(comparison.method),
        "deletion": curves("deletion"),
        "random_deletion": curves("random_deletion"),
    }
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    return path


def output_paths(out_dir: str | Path, method: str) -> dict[str, Path]:
    out_dir = Path(out_dir)
    return {
        "figure": out_dir / f"saliency_{method}.png",
        "raw_figure": out_dir / f"saliency_{method}_raw.png",
        "maps": out_dir / f"saliency_{method}.npz",
        "agreement": out_dir / f"agreement_{method}.csv",
    }


def write_outputs(
    comparison: Comparison, out_dir: str | Path, cmap: str = "jet", alpha: float = 0.5
) -> dict[str, Path]:
    """Overlay and raw-map PNGs, the maps as .npz and the agreement CSV, side by side."""
    paths = output_paths(out_dir, comparison.method)
    overlay = comparison_figure(comparison, overlay=True, cmap=cmap, alpha=alpha)
    save_figure(overlay, paths["figure"])
    save_figure(comparison_figure(comparison, overlay=False, cmap=cmap), paths["raw_figure"])
    save_maps(comparison, paths["maps"])
    write_agreement_csv(comparison, paths["agreement"])
    return paths
