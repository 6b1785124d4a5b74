"""Agreement metrics, faithfulness, putting maps on one grid, compare_models' options and errors.

compare_models end to end, with the files it writes: tests/integration/test_explain_outputs.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from arttl.errors import ConfigError
from arttl.explain.agreement import (
    auc,
    deletion_curve,
    random_deletion_curve,
    spearman,
    top_iou,
    top_mask,
)
from arttl.explain.alignment import to_common_grid
from arttl.explain.compare import CompareOptions, compare_models
from arttl.explain.figure import display_scale
from arttl.explain.inputs import list_images
from arttl.explain.methods import explain
from tests.fixtures.explain_inputs import untrained_classifier
from tests.fixtures.planted import COLS, ROWS, Planted, planted_input


def test_spearman() -> None:
    rng = np.random.default_rng(0)
    a = rng.random((16, 16))
    assert spearman(a, a) == pytest.approx(1.0)
    assert spearman(a, 2 * a + 5) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert abs(spearman(a, rng.random((16, 16)))) < 0.3
    assert np.isnan(spearman(a, np.ones_like(a)))


def test_top_iou() -> None:
    a = np.arange(100.0).reshape(10, 10)
    assert top_mask(a, 0.1).sum() == 10 and top_mask(a, 0.1)[9].all()
    assert top_iou(a, a, 0.1) == 1.0
    assert top_iou(a, -a, 0.1) == 0.0
    assert top_iou(a, a.T, 0.1) == pytest.approx(1 / 19)  # one shared pixel (9, 9)
    with pytest.raises(ConfigError, match="top_fraction"):
        top_mask(a, 0.0)


def test_deletion_of_salient_pixels_beats_random_on_planted_model() -> None:
    model, x = Planted(), planted_input()
    for method in ("saliency", "visual_backprop", "gradcam"):
        e = explain(model, x, method)
        curve = deletion_curve(model, x, e.map, e.target, steps=10)
        rand = random_deletion_curve(model, x, e.target, steps=10, repeats=3)
        assert curve.shape == rand.shape == (11,)
        assert curve[0] == pytest.approx(rand[0])  # nothing removed yet
        assert auc(curve) < auc(rand) - 0.05, method
    # And a map that points away from the region is no better than chance.
    wrong = np.ones((64, 64))
    wrong[ROWS, COLS] = 0
    assert auc(deletion_curve(model, x, wrong, 0, steps=10)) > auc(rand) - 0.01


def test_to_common_grid_crops_the_shared_centre() -> None:
    a = np.zeros((8, 8), dtype=np.float32)
    a[2:6, 2:6] = 1.0  # the centre half of this model's view
    out = to_common_grid(a, (4, 4), crop_fraction=1.0, shared_fraction=0.5)
    assert out.shape == (4, 4) and np.allclose(out, 1.0)
    assert to_common_grid(a, (16, 16)).shape == (16, 16)
    rgb = np.zeros((8, 8, 3), dtype=np.uint8)
    assert to_common_grid(rgb, (4, 4)).shape == (4, 4, 3)


def test_display_scale() -> None:
    a = np.r_[np.zeros(999), 1000.0]  # one extreme pixel must not flatten the rest
    assert display_scale(a).max() == 1.0
    assert np.all(display_scale(np.ones((3, 3))) == 0)


def test_list_images(image_dir) -> None:
    names = [p.name for p in list_images(image_dir)]
    assert names == ["art0.png", "art1.png", "broken.jpg"]
    assert len(list_images([image_dir / "art0.png", image_dir], max_images=2)) == 2
    with pytest.raises(ConfigError, match="no such file or folder"):
        list_images(image_dir / "missing")
    with pytest.raises(ConfigError, match="images is not set"):
        list_images(None)  # type: ignore[arg-type]


def test_one_model_and_pil_images_without_deletion() -> None:
    img = Image.new("RGB", (50, 40), (120, 30, 200))
    img.paste((0, 255, 0), (10, 10, 30, 30))
    comp = compare_models(
        [untrained_classifier(0)], [("green", img)], method="saliency", deletion_steps=0
    )
    df = comp.agreement
    assert len(df) == 1 and df.model_b.isna().all() and np.isnan(df.deletion_auc_a[0])


def test_bad_requests_fail_before_any_image(image_dir) -> None:
    m = untrained_classifier(0)
    with pytest.raises(ConfigError, match="method='deep_dream'"):
        compare_models([m], image_dir, method="deep_dream")
    with pytest.raises(ConfigError, match=r"method_options\.layer='layer7'"):
        compare_models([m], image_dir, method="gradcam", method_options={"layer": "layer7"})
    with pytest.raises(ConfigError, match="top_fraction"):
        compare_models([m], image_dir, CompareOptions(method="saliency", top_fraction=1.5))
    with pytest.raises(ConfigError, match=r"target.*'organ'"):
        compare_models([m], image_dir, method="saliency", target="organ")
    with pytest.raises(ConfigError, match="models is empty"):
        compare_models([], image_dir)
    options = CompareOptions(method="saliency", target="apse", deletion_steps=0)
    comp = compare_models([m], image_dir / "art0.png", options)
    assert comp.images[0].results[0].target == 1
    # keywords override the options' fields; the options themselves stay as they were
    comp = compare_models([m], image_dir / "art0.png", options, target=None)
    assert comp.target is None and options.target == "apse"
