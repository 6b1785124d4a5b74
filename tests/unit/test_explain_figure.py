"""The comparison figure is readable without the code: names, sizes, colours and numbers."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.text import Text

from arttl.config import CONF_DIR
from arttl.errors import ConfigError
from arttl.explain.agreement import spearman, top_iou
from arttl.explain.compare import Comparison, ImageResult, ModelResult
from arttl.explain.figure import (
    PERCEPTUAL_CMAPS,
    SCALE_NOTE,
    check_cmap,
    comparison_figure,
    write_outputs,
)

NAMES = [
    "θ ImageNet · vgg19",
    "θ̂ rijks_artist-tuned vgg19 · fine_tune on antwerp_artist (2024-05-01_12-00-00)",
]
MIN_CELL_INCHES = 3.0
MIN_POINTS = 9.0


def _comparison(n_images: int = 2, names: list[str] = NAMES, deletion_steps: int = 4) -> Comparison:
    rng = np.random.default_rng(0)
    images = []
    for i in range(n_images):
        results = []
        for j, name in enumerate(names):
            m = rng.random((32, 32))
            m[8:16, 8 + 4 * j : 16 + 4 * j] += 2  # overlapping, not identical, hot spots
            curve = np.linspace(0.9, 0.1 + 0.1 * j, deletion_steps + 1) if deletion_steps else None
            rnd = np.linspace(0.9, 0.4, deletion_steps + 1) if deletion_steps else None
            results.append(ModelResult(name, j, f"class_{j}", 0.4 + 0.1 * j, m, m, curve, rnd))
        image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        images.append(ImageResult(f"art{i}.jpg", f"/data/figures/art{i}.jpg", image, results))
    return Comparison(
        "visual_backprop", list(names), images, top_fraction=0.1, deletion_steps=deletion_steps
    )


def _drawn(fig: Figure) -> Figure:
    FigureCanvasAgg(fig).draw()
    return fig


def _all_text(fig: Figure) -> str:
    """Every visible text of the figure, with line breaks from wrapping made spaces."""
    texts = [t.get_text() for t in fig.findobj(Text) if t.get_visible() and t.get_text()]
    return " ".join(" ".join(texts).split())


def _image_axes(fig: Figure) -> list:
    return [ax for ax in fig.axes if any(isinstance(c, AxesImage) for c in ax.get_children())]


def test_default_cmap_is_perceptually_uniform() -> None:
    for fn in (comparison_figure, write_outputs):
        assert inspect.signature(fn).parameters["cmap"].default in PERCEPTUAL_CMAPS
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="saliency")
    assert cfg.cmap in PERCEPTUAL_CMAPS
    # The maps and the colour bar really use it.
    fig = comparison_figure(_comparison(), overlay=False)
    map_images = [ax.images[-1] for ax in _image_axes(fig) if ax.images[-1].get_array().ndim == 2]
    assert map_images and {im.get_cmap().name for im in map_images} == {cfg.cmap}
    # ... and `cmap=` still overrides it.
    other = comparison_figure(_comparison(), overlay=False, cmap="viridis")
    assert {
        ax.images[-1].get_cmap().name
        for ax in _image_axes(other)
        if ax.images[-1].get_array().ndim == 2
    } == {"viridis"}


def test_unknown_cmap_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"cmap='infernoo'.*did you mean inferno.*viridis"):
        check_cmap("infernoo")
    with pytest.raises(ConfigError, match=r"cmap='rainbowish'.*inferno, viridis"):
        comparison_figure(_comparison(), cmap="rainbowish")
    assert check_cmap("jet") == "jet"  # any matplotlib map stays allowed when asked for


def test_colour_bar_explains_the_scale() -> None:
    text = _all_text(_drawn(comparison_figure(_comparison())))
    assert " ".join(SCALE_NOTE.split()) in text
    assert "low" in text and "high" in text


@pytest.mark.parametrize(
    ("n_images", "names"),
    [(1, NAMES[:1]), (3, NAMES), (2, [*NAMES, "resnet18 from scratch"])],
    ids=["one-model", "two-models", "three-models"],
)
def test_cells_are_legible_size_and_fonts_are_big_enough(n_images: int, names: list[str]) -> None:
    fig = _drawn(comparison_figure(_comparison(n_images, names)))
    cells = _image_axes(fig)
    assert len(cells) == n_images * (1 + len(names))
    for ax in cells:
        box = ax.get_window_extent()
        assert box.width / fig.dpi >= MIN_CELL_INCHES
        assert box.height / fig.dpi >= MIN_CELL_INCHES
    sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_text().strip()]
    assert sizes and min(sizes) >= MIN_POINTS
    # Nothing drawn outside the canvas (titles and text blocks fit the computed layout).
    renderer = fig.canvas.get_renderer()
    width, height = fig.bbox.width, fig.bbox.height
    for t in fig.findobj(Text):
        if t.get_text().strip():
            box = t.get_window_extent(renderer)
            assert box.x0 >= -1 and box.y0 >= -1, t.get_text()
            assert box.x1 <= width + 1 and box.y1 <= height + 1, t.get_text()


def test_titles_name_models_and_predictions_wrapped_not_cut() -> None:
    comp = _comparison()
    fig = _drawn(comparison_figure(comp))
    titles = [ax.get_title() for ax in _image_axes(fig)]
    assert len(titles) == 2 * 3
    for row, img in enumerate(comp.images):
        assert titles[row * 3] == f"{img.name}\nin figures/\n(image)"  # its folder
        for col, (tag, res) in enumerate(zip("AB", img.results, strict=True), start=1):
            title = titles[row * 3 + col]
            assert " ".join(title.split()).startswith(f"{tag}: {res.model}")  # every word kept
            if len(title.splitlines()) > 2:  # a long name breaks between its parts
                assert title.splitlines()[1].startswith("· ")
            assert title.endswith(f"top-1: {res.label} ({res.probability:.0%})")
            assert all(len(line) <= 60 for line in title.splitlines())  # wrapped to the cell
            assert "…" not in title
    text = _all_text(fig)
    assert "VisualBackProp saliency" in text
    assert "2 images from /data/figures, one per row" in text
    assert "Columns: the image (as the models see it), then one map per model (A, B)" in text


def test_agreement_numbers_are_written_under_each_row() -> None:
    comp = _comparison()
    fig = _drawn(comparison_figure(comp))
    text = _all_text(fig)
    for img in comp.images:
        a, b = img.results
        s, iou = spearman(a.map, b.map), top_iou(a.map, b.map, 0.1)
        line = f"agreement A vs B: Spearman {s:.2f}, top-10 % overlap (IoU) {iou:.2f}"
        assert line in text
        assert f"A {a.deletion_auc:.3f} vs random {a.random_auc:.3f} (below random)" in text
        assert f"B {b.deletion_auc:.3f} vs random {b.random_auc:.3f}" in text
    # Each row's numbers sit under that row's maps, above the next row.
    rows = [t for t in fig.texts if t.get_text().startswith("agreement A vs B")]
    assert len(rows) == 2
    cells = _image_axes(fig)
    first_row_bottom = min(ax.get_window_extent().y0 for ax in cells[:3])
    second_row_top = max(ax.get_window_extent().y1 for ax in cells[3:])
    y0 = rows[0].get_window_extent().y1
    assert second_row_top < rows[0].get_window_extent().y0 and y0 <= first_row_bottom
    # One footnote explains the numbers in plain words.
    assert "deletion AUC below random = the map points at pixels the prediction uses" in text
    assert "Spearman: rank correlation" in text and "Top-10 % overlap (IoU)" in text


def test_one_model_without_deletion_has_no_agreement_lines() -> None:
    comp = _comparison(1, NAMES[:1], deletion_steps=0)
    text = _all_text(_drawn(comparison_figure(comp)))
    assert "agreement" not in text and "deletion AUC:" not in text
    assert "Deletion AUC" not in text  # the footnote only explains numbers that are shown


def test_write_outputs_uses_the_new_figure(tmp_path: Path) -> None:
    from PIL import Image

    paths = write_outputs(_comparison(1), tmp_path)
    with Image.open(paths["figure"]) as fig:
        # 3 columns of >= 3 inches at the saved resolution.
        assert fig.size[0] >= 3 * MIN_CELL_INCHES * 100
