"""Agreement metrics, faithfulness, putting maps on one grid, and the files written."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from arttl.errors import ConfigError
from arttl.explain.compare import (
    auc,
    compare_models,
    deletion_curve,
    list_images,
    random_deletion_curve,
    spearman,
    to_common_grid,
    top_iou,
    top_mask,
)
from arttl.explain.figure import comparison_figure, display_scale, write_outputs
from arttl.explain.methods import explain
from arttl.explain.models import ExplainedModel
from arttl.models.classifier import ArtClassifier
from tests.unit.test_explain_methods import COLS, ROWS, Planted, planted_input


def _classifier(seed: int, image_size: int = 64) -> ExplainedModel:
    torch.manual_seed(seed)
    model = ArtClassifier(
        "test_resnet", num_classes=3, class_names=["altar", "apse", "vault"], image_size=image_size
    )
    return ExplainedModel.from_classifier(model, name=f"net{seed}-{image_size}")


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i, (w, h) in enumerate([(90, 70), (60, 100)]):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
            folder / f"art{i}.png"
        )
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (folder / ".hidden").write_text("ignored")
    return folder


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


def test_compare_models_writes_everything(image_dir, tmp_path) -> None:
    a, a_again, b = _classifier(0), _classifier(0), _classifier(1, image_size=96)
    a_again.name = "net0-copy"
    comp = compare_models(
        [a, a_again, b], image_dir, method="visual_backprop", deletion_steps=4, deletion_random=2
    )
    assert [i.name for i in comp.images] == ["art0.png", "art1.png"]
    assert comp.skipped and comp.skipped[0][0] == "broken.jpg"
    assert "not an image" in comp.skipped[0][1] or "corrupt" in comp.skipped[0][1]
    df = comp.agreement
    assert len(df) == 2 * 3  # two images x three pairs
    same = df[(df.model_a == "net0-64") & (df.model_b == "net0-copy")]
    diff = df[(df.model_a == "net0-64") & (df.model_b == "net1-96")]
    assert (same.spearman > 0.999).all() and (same.top_iou == 1.0).all()
    assert (diff.spearman < 0.99).all()
    assert df.spearman.between(-1, 1).all() and df.top_iou.between(0, 1).all()
    assert df.deletion_auc_a.between(0, 1).all() and df.random_auc_b.between(0, 1).all()
    # The shared grid is the largest input; the image shown is the smallest shared square.
    assert comp.images[0].image.shape == (96, 96, 3)
    assert comp.images[0].results[2].map.shape == (96, 96)
    assert comp.images[0].results[2].native_map.shape == (96, 96)
    assert comp.images[0].results[0].native_map.shape == (64, 64)

    fig = comparison_figure(comp)  # each map: tag, model name, its top-1 label and probability
    for row, img in enumerate(comp.images):
        titles = [fig.axes[row * 4 + 1 + j].get_title() for j in range(3)]
        for tag, title, res in zip("ABC", titles, img.results, strict=True):
            assert title == f"{tag}: {res.model}\ntop-1: {res.label} ({res.probability:.0%})"
    plt.close(fig)

    paths = write_outputs(comp, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "agreement_visual_backprop.csv",
        "saliency_visual_backprop.npz",
        "saliency_visual_backprop.png",
        "saliency_visual_backprop_raw.png",
    ]
    with Image.open(paths["figure"]) as fig, Image.open(paths["raw_figure"]) as raw:
        assert fig.size == raw.size and fig.size[0] > fig.size[1]  # 4 columns, 2 rows
        assert np.asarray(fig.convert("L")).std() > 10
    npz = np.load(paths["maps"])
    assert npz["maps"].shape == (2, 3, 96, 96) and npz["images"].shape == (2, 96, 96, 3)
    assert list(npz["model_names"]) == ["net0-64", "net0-copy", "net1-96"]
    assert list(npz["image_names"]) == ["art0.png", "art1.png"]
    assert npz["deletion"].shape == (2, 3, 5) and str(npz["method"]) == "visual_backprop"
    assert set(npz["labels"].ravel()) <= {"altar", "apse", "vault"}
    csv = pd.read_csv(paths["agreement"])
    assert len(csv) == 6 and csv.spearman.between(-1, 1).all()


def test_one_model_and_pil_images_without_deletion() -> None:
    img = Image.new("RGB", (50, 40), (120, 30, 200))
    img.paste((0, 255, 0), (10, 10, 30, 30))
    comp = compare_models([_classifier(0)], [("green", img)], "saliency", deletion_steps=0)
    df = comp.agreement
    assert len(df) == 1 and df.model_b.isna().all() and np.isnan(df.deletion_auc_a[0])


def test_bad_requests_fail_before_any_image(image_dir) -> None:
    m = _classifier(0)
    with pytest.raises(ConfigError, match="method='deep_dream'"):
        compare_models([m], image_dir, "deep_dream")
    with pytest.raises(ConfigError, match=r"method_options\.layer='layer7'"):
        compare_models([m], image_dir, "gradcam", method_options={"layer": "layer7"})
    with pytest.raises(ConfigError, match="top_fraction"):
        compare_models([m], image_dir, "saliency", top_fraction=1.5)
    with pytest.raises(ConfigError, match=r"target.*'organ'"):
        compare_models([m], image_dir, "saliency", target="organ")
    comp = compare_models([m], image_dir / "art0.png", "saliency", target="apse", deletion_steps=0)
    assert comp.images[0].results[0].target == 1
