"""compare_models end to end: three models (two of them equal) on a folder of two images and a
broken file, the agreement table, the figure's titles and the four files written.

Deletion curves and two rendered figures take a few seconds, hence here; the metrics, the grid
and the figure's parts are unit-tested in tests/unit/test_explain_compare.py and
test_explain_figure.py.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from PIL import Image

from arttl.explain.compare import compare_models
from arttl.explain.figure import comparison_figure, write_outputs
from tests.fixtures.explain_inputs import untrained_classifier


def test_compare_models_writes_everything(image_dir, tmp_path) -> None:
    a, a_again, b = (
        untrained_classifier(0),
        untrained_classifier(0),
        untrained_classifier(1, image_size=96),
    )
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
