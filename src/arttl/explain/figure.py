"""The comparison figure (rows = images, columns = the image and one map per model) and files.

Figures are built on ``matplotlib.figure.Figure`` directly, not pyplot: no global state, no
GUI backend needed on a server, and a notebook shows the returned figure as it is.
"""

from __future__ import annotations

import difflib
import itertools
import os
import string
import textwrap
from pathlib import Path
from typing import NamedTuple

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from arttl.atomic import atomic_path
from arttl.errors import ConfigError
from arttl.explain.agreement import spearman, top_iou, write_agreement_csv
from arttl.explain.compare import Comparison, ImageResult, ModelResult

__all__ = [
    "DEFAULT_CMAP",
    "PERCEPTUAL_CMAPS",
    "SCALE_NOTE",
    "agreement_lines",
    "check_cmap",
    "comparison_figure",
    "display_scale",
    "footnote",
    "model_tags",
    "output_paths",
    "save_figure",
    "save_maps",
    "task_note",
    "write_outputs",
]

# Perceptually uniform: equal steps in value look like equal steps in colour, and the map
# still reads in greyscale and for colour-blind readers (unlike jet).
PERCEPTUAL_CMAPS = ("inferno", "viridis", "magma", "plasma", "cividis")
DEFAULT_CMAP = "inferno"
DISPLAY_PERCENTILE = 99.5
SCALE_NOTE = "low → high saliency (display-scaled, top 0.5 % saturated)"
METHOD_TITLES = {
    "visual_backprop": "VisualBackProp",
    "saliency": "Gradient (Saliency)",
    "integrated_gradients": "Integrated Gradients",
    "guided_backprop": "Guided Backprop",
    "smoothgrad": "SmoothGrad",
    "gradcam": "Grad-CAM",
    "occlusion": "Occlusion",
}

# Type sizes (points) and layout (inches). Every text is at least 9 pt.
TITLE_PT, SUBTITLE_PT, CELL_PT, TEXT_PT = 13.0, 10.0, 10.0, 9.5
LINE = 1.3  # line height / font size
MARGIN, GAP, ROW_GAP = 0.3, 0.15, 0.3
CHAR_EM = 0.56  # mean character width of DejaVu Sans, in ems, for wrapping


def display_scale(a: np.ndarray, percentile: float = DISPLAY_PERCENTILE) -> np.ndarray:
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


def check_cmap(name: str) -> str:
    """A matplotlib colour map name, or a ConfigError naming a few good ones."""
    if str(name) in colormaps:
        return str(name)
    close = difflib.get_close_matches(str(name), list(colormaps), n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise ConfigError(
        f"cmap={name!r} is not a matplotlib colour map{hint}; use a perceptually uniform one: "
        f"{', '.join(PERCEPTUAL_CMAPS)} (or any name in matplotlib.colormaps)."
    )


def model_tags(n: int) -> list[str]:
    """Short column tags (A, B, ...) that the agreement lines refer to."""
    letters = string.ascii_uppercase
    return [letters[i] if i < len(letters) else f"M{i + 1}" for i in range(n)]


def _wrap(text: str, width_inches: float, points: float) -> list[str]:
    """Lines of ``text`` that fit ``width_inches`` at ``points``; breaks between words (and only
    inside a word longer than a whole line)."""
    chars = max(8, int(width_inches * 72 / (points * CHAR_EM)))
    lines: list[str] = []
    for paragraph in str(text).split("\n"):
        lines.extend(textwrap.wrap(paragraph, chars, break_on_hyphens=False) or [""])
    return lines


def _pct(fraction: float) -> str:
    return f"{fraction * 100:g} %"


def _num(value: float) -> str:
    return f"{value:.2f}" if np.isfinite(value) else "n/a (flat map)"


def agreement_lines(comparison: Comparison, row: int) -> list[str]:
    """The numbers under one image row, in words: one line per pair of models, then the
    faithfulness of each map (when the deletion check ran)."""
    img = comparison.images[row]
    tags = model_tags(len(img.results))
    top = _pct(comparison.top_fraction)
    lines = [
        f"agreement {tags[i]} vs {tags[j]}: Spearman {_num(spearman(a.map, b.map))}, "
        f"top-{top} overlap (IoU) {_num(top_iou(a.map, b.map, comparison.top_fraction))}"
        for (i, a), (j, b) in itertools.combinations(enumerate(img.results), 2)
    ]
    if comparison.deletion_steps:
        parts = []
        for tag, r in zip(tags, img.results, strict=True):
            d, rnd = r.deletion_auc, r.random_auc
            if not (np.isfinite(d) and np.isfinite(rnd)):
                parts.append(f"{tag} n/a")
                continue
            # Three decimals, so that "below random" is visible in the numbers themselves.
            verdict = "below random" if d < rnd else "not below random"
            if f"{d:.3f}" == f"{rnd:.3f}":
                verdict = "same as random"
            parts.append(f"{tag} {d:.3f} vs random {rnd:.3f} ({verdict})")
        lines.append("deletion AUC: " + "; ".join(parts))
    return lines


def footnote(comparison: Comparison) -> str:
    """What the numbers under the rows mean, for a reader who never saw the code."""
    top = _pct(comparison.top_fraction)
    text = (
        "How to read the numbers. Spearman: rank correlation of two maps over all pixels "
        "(1 = same order of importance, 0 = unrelated, negative = opposite). "
        f"Top-{top} overlap (IoU): intersection over union of the two maps' {top} most "
        "salient pixels (1 = the same region, 0 = disjoint)."
    )
    if comparison.deletion_steps:
        text += (
            " Deletion AUC: the model's probability for the class in the title, averaged "
            "while its most salient pixels are greyed out first, against greying out pixels "
            "in random order; deletion AUC below random = the map points at pixels the "
            "prediction uses."
        )
    text += " Colours are scaled per map for display; the numbers use the raw maps."
    for note in comparison.notes:
        text += f" Note: {note}"
    return text


def _image_source(comparison: Comparison) -> str:
    paths = [Path(im.path) for im in comparison.images if im.path]
    n = len(comparison.images)
    count = f"{n} image{'s' if n != 1 else ''}"
    if len(paths) < n:
        return f"{count} given in memory" if not paths else count
    if n == 1:
        return f"1 image: {_short_path(paths[0])}"
    try:
        common = Path(os.path.commonpath([str(p.parent.resolve()) for p in paths]))
    except ValueError:  # different drives
        return count
    return f"{count} from {_short_path(common)}"


def _short_path(path: Path) -> str:
    path = path.resolve()
    if path.is_relative_to(Path.cwd().resolve()):
        path = path.relative_to(Path.cwd().resolve())
    parts = path.parts
    return str(path) if len(parts) <= 4 else "…/" + "/".join(parts[-3:])


def _height(lines: int, points: float) -> float:
    """Inches taken by ``lines`` lines of text at ``points``."""
    return lines * points * LINE / 72


BAR_H = 0.16  # the colour bar; its label below takes one text line and 0.25 more
BAR_LABEL_H = _height(1, TEXT_PT) + 0.25


class _Page(NamedTuple):
    """A figure laid out in inches from its top-left corner (matplotlib wants fractions)."""

    fig: Figure
    width: float
    height: float

    def fy(self, inches_from_top: float) -> float:
        return 1 - inches_from_top / self.height

    def box(self, left: float, top: float, w: float, h: float) -> tuple[float, float, float, float]:
        """``(left, bottom, width, height)`` in figure fractions of a box given in inches."""
        return (left / self.width, self.fy(top + h), w / self.width, h / self.height)


class _Row(NamedTuple):
    """One image row's texts: a title per cell, the most lines of any, the lines under it."""

    titles: list[str]
    title_lines: int
    lines: list[str]

    def height(self, cell_inches: float) -> float:
        """The title block above the cells, the cells, the agreement lines below."""
        return (
            _height(self.title_lines, CELL_PT)
            + 0.08
            + cell_inches
            + 0.1
            + _height(len(self.lines), TEXT_PT)
        )


def task_note(comparison: Comparison) -> str:
    """Which task the maps explain (multi-task checkpoints): `` — task material``, or per
    model tag when they differ; "" when no model has a task."""
    tasks = list(comparison.tasks)
    named = {t for t in tasks if t}
    if not named:
        return ""
    if len(named) == 1 and all(tasks):
        return f" — task {named.pop()}"
    tags = model_tags(len(tasks))
    return " — tasks: " + ", ".join(f"{tag} {t}" for tag, t in zip(tags, tasks, strict=True) if t)


def _header_lines(
    comparison: Comparison, tags: list[str], overlay: bool, text_width: float
) -> list[str]:
    """The subtitle: which images, what the columns are, what each map is titled with."""
    what = (
        "its top-1 class and probability"
        if comparison.target is None
        else f"the probability of the explained class ({comparison.target})"
    )
    return _wrap(
        f"{_image_source(comparison)}, one per row. Columns: the image (as the models see "
        f"it), then one map per model ({', '.join(tags)})"
        f"{' over the image' if overlay else ''}, titled with the model and {what}.",
        text_width,
        SUBTITLE_PT,
    )


def _cell_title(tag: str, result: ModelResult, kind: str, cell_inches: float) -> str:
    """``A: <model name>`` wrapped to the cell (between a name's `` · `` parts where possible),
    then ``<kind>: <label> (<probability>)``."""
    name = result.model
    lines = _wrap(f"{tag}: {name}", cell_inches, CELL_PT)
    if len(lines) > 1 and " · " in name:
        first, *rest = name.split(" · ")
        lines = _wrap(f"{tag}: {first}", cell_inches, CELL_PT)
        for part in rest:
            lines += _wrap(f"· {part}", cell_inches, CELL_PT)
    kind = f"{result.task} {kind}" if result.task else kind  # "material top-1: bronze (62%)"
    return "\n".join([*lines, f"{kind}: {result.label} ({result.probability:.0%})"])


def _draw_map(
    ax: Axes, image: np.ndarray, saliency: np.ndarray, overlay: bool, cmap: str, alpha: float
) -> None:
    shown = display_scale(saliency)
    if overlay:
        # Opacity follows saliency, so the artwork stays visible where the map is low.
        rgba = colormaps[cmap](shown)
        rgba[..., 3] = alpha * np.sqrt(shown)
        ax.imshow(image)
        ax.imshow(rgba)
    else:
        ax.imshow(shown, cmap=cmap, vmin=0.0, vmax=1.0)


def _colour_bar(
    fig: Figure, box: tuple[float, float, float, float], cmap: str, overlay: bool
) -> None:
    """The horizontal low-to-high bar in ``box`` (figure fractions), labelled with the scale."""
    bar = fig.colorbar(
        ScalarMappable(Normalize(0.0, 1.0), cmap=cmap),
        cax=fig.add_axes(box),
        orientation="horizontal",
    )
    bar.set_ticks([0.0, 1.0], labels=["low", "high"], fontsize=TEXT_PT)
    scale = SCALE_NOTE + ("; overlay opacity also grows with saliency" if overlay else "")
    bar.set_label(scale, fontsize=TEXT_PT)


def comparison_figure(
    comparison: Comparison,
    overlay: bool = True,
    cmap: str = DEFAULT_CMAP,
    alpha: float = 0.5,
    cell_inches: float = 3.2,
) -> Figure:
    """Rows = images; columns = the image, then each model's map (tagged A, B, ...) titled with
    the model's name and its top-1 (or explained) label and probability. Under each row, the
    agreement numbers in words; at the bottom, a colour bar and a footnote explaining them.
    ``overlay=False`` shows the maps alone.

    The layout is computed in inches, so every map is ``cell_inches`` wide whatever the number
    of rows and columns, and every text is at least 9 pt. The heights are summed first (the
    figure's size), then header, rows and footer are drawn top to bottom, each taking the
    running ``y`` (inches from the top) and returning the ``y`` below it.
    """
    if not comparison.images:
        raise ValueError("no image was explained, so there is nothing to draw")
    cmap = check_cmap(cmap)
    n_cols = 1 + len(comparison.model_names)
    tags = model_tags(n_cols - 1)
    width = 2 * MARGIN + n_cols * cell_inches + (n_cols - 1) * GAP
    text_width = width - 2 * MARGIN

    header = _header_lines(comparison, tags, overlay, text_width)
    header_h = _height(1, TITLE_PT) + _height(len(header), SUBTITLE_PT) + 0.15
    rows = _rows(comparison, tags, cell_inches, text_width)
    notes = _wrap(footnote(comparison), text_width, TEXT_PT)
    footer_h = BAR_H + BAR_LABEL_H + 0.15 + _height(len(notes), TEXT_PT)
    row_heights = [row.height(cell_inches) for row in rows]
    total = header_h + sum(row_heights) + ROW_GAP * len(rows) + footer_h + 2 * MARGIN

    page = _Page(Figure(figsize=(width, total)), width, total)
    y = _draw_header(page, comparison.method, header, header_h, task_note(comparison))
    for img, row in zip(comparison.images, rows, strict=True):
        y = _draw_row(page, img, row, y, cell_inches, overlay, cmap, alpha)
    _draw_footer(page, notes, y, text_width, cmap, overlay)
    return page.fig


def _rows(
    comparison: Comparison, tags: list[str], cell_inches: float, text_width: float
) -> list[_Row]:
    """Each image row's cell titles (the image, then each map) and wrapped agreement lines."""
    kind = "top-1" if comparison.target is None else "class"
    rows: list[_Row] = []
    for r, img in enumerate(comparison.images):
        titles = [_image_title(img)] + [
            _cell_title(tag, result, kind, cell_inches)
            for tag, result in zip(tags, img.results, strict=True)
        ]
        lines = [
            w for line in agreement_lines(comparison, r) for w in _wrap(line, text_width, TEXT_PT)
        ]
        rows.append(_Row(titles, max(t.count("\n") + 1 for t in titles), lines))
    return rows


def _image_title(img: ImageResult) -> str:
    """The image cell's title: its file name, the folder it is in (collections file images by
    class, so a reader can tell a wrong prediction; a folder, not a verified label), "(image)"."""
    folder = Path(img.path).parent.name if img.path else ""
    return f"{img.name}\n" + (f"in {folder}/\n" if folder else "") + "(image)"


def _draw_header(
    page: _Page, method: str, header: list[str], header_h: float, task: str = ""
) -> float:
    """The title (with ``task``, ``task_note``'s words) and the subtitle at the top margin;
    the ``y`` below them."""
    title = f"{METHOD_TITLES.get(method, method)} saliency: where each model looks{task}"
    y = MARGIN
    page.fig.text(
        0.5, page.fy(y), title, ha="center", va="top", fontsize=TITLE_PT, fontweight="bold"
    )
    y += _height(1, TITLE_PT)
    page.fig.text(0.5, page.fy(y), "\n".join(header), ha="center", va="top", fontsize=SUBTITLE_PT)
    return y + (header_h - _height(1, TITLE_PT))


def _draw_row(
    page: _Page,
    img: ImageResult,
    row: _Row,
    y: float,
    cell_inches: float,
    overlay: bool,
    cmap: str,
    alpha: float,
) -> float:
    """One image row from ``y``: the titled cells, then the agreement lines; the ``y`` below it."""
    y += _height(row.title_lines, CELL_PT) + 0.08
    for c, title in enumerate(row.titles):
        left = MARGIN + c * (cell_inches + GAP)
        ax = page.fig.add_axes(page.box(left, y, cell_inches, cell_inches))
        ax.set_axis_off()
        ax.set_title(title, fontsize=CELL_PT, pad=4, linespacing=1.15)
        if c == 0:
            ax.imshow(img.image)
        else:
            _draw_map(ax, img.image, img.results[c - 1].map, overlay, cmap, alpha)
    y += cell_inches + 0.1
    if row.lines:
        text = "\n".join(row.lines)
        page.fig.text(MARGIN / page.width, page.fy(y), text, ha="left", va="top", fontsize=TEXT_PT)
    return y + (_height(len(row.lines), TEXT_PT) + ROW_GAP)


def _draw_footer(
    page: _Page, notes: list[str], y: float, text_width: float, cmap: str, overlay: bool
) -> None:
    """The colour bar, centred, from ``y``; the footnote below it."""
    bar_w = min(text_width, 4.0)
    _colour_bar(page.fig, page.box((page.width - bar_w) / 2, y, bar_w, BAR_H), cmap, overlay)
    y += BAR_H + BAR_LABEL_H + 0.15
    page.fig.text(
        MARGIN / page.width, page.fy(y), "\n".join(notes), ha="left", va="top", fontsize=TEXT_PT
    )


def save_figure(fig: Figure, path: str | Path, dpi: int = 130) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return path


def save_maps(comparison: Comparison, path: str | Path) -> Path:
    """The raw maps on the shared grid, with what produced them, as one ``.npz``.

    Arrays: ``images`` (N, H, W, 3) uint8, ``maps`` (N, M, H, W) float32, ``image_names`` (N,),
    ``model_names`` (M,), ``targets``/``labels``/``probabilities`` (N, M), ``method``,
    ``deletion``/``random_deletion`` (N, M, steps + 1; empty when the check was skipped),
    ``tasks`` (M,: the task each model was explained for, "" for none).
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
        "tasks": np.array([t or "" for t in comparison.tasks], dtype=str),  # "" = no task
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
    comparison: Comparison, out_dir: str | Path, cmap: str = DEFAULT_CMAP, alpha: float = 0.5
) -> dict[str, Path]:
    """Overlay and raw-map PNGs, the maps as .npz and the agreement CSV, side by side."""
    paths = output_paths(out_dir, comparison.method)
    overlay = comparison_figure(comparison, overlay=True, cmap=cmap, alpha=alpha)
    save_figure(overlay, paths["figure"])
    save_figure(comparison_figure(comparison, overlay=False, cmap=cmap), paths["raw_figure"])
    save_maps(comparison, paths["maps"])
    write_agreement_csv(comparison, paths["agreement"])
    return paths
