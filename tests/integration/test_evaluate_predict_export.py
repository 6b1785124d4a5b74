"""evaluate / predict / export on one tiny checkpoint trained here (test_resnet, 64 px, CPU).

Every number arttl reports is recomputed independently (numpy, from logits this file computes
itself), so a broken metric, a shuffled class order or a wrong preprocessing step fails here.
"""

from __future__ import annotations

import inspect
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from arttl import evaluate as evaluate_cli
from arttl import export as export_cli
from arttl import predict as predict_cli
from arttl.data.features import cached_features
from arttl.data.images import load_rgb
from arttl.data.store import H5ImageDataset
from arttl.errors import ConfigError
from arttl.inference.evaluation import confident_mistakes, evaluate_checkpoint, plot_confusion
from arttl.inference.exporting import export_checkpoint
from arttl.inference.prediction import gather_inputs, load_classifier, predict_images
from arttl.models.classifier import ArtClassifier
from tests.fixtures.numpy_metrics import record
from tests.fixtures.tiny_runs import colour_image, make_checkpoint, make_store

CLASSES = ("blue", "green", "red", "ochre", "violet", "grey")  # 6: top-3 and top-5 both count
TEST_COUNTS = [5, 1, 3, 2, 6, 4]  # uneven support: macro top-1 differs from top-1


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One store and one checkpoint (about 3 s) shared by every test in this file."""
    root = tmp_path_factory.mktemp("tiny")
    store = make_store(root / "store", CLASSES, {"train": 4, "val": 1, "test": TEST_COUNTS}, seed=1)
    ckpt = make_checkpoint(store, root / "checkpoints" / "tiny.ckpt", epochs=1)
    return {"root": root, "store": store, "ckpt": ckpt}


@pytest.fixture(scope="module")
def reference(tiny: dict[str, Path]) -> dict[str, np.ndarray]:
    """Logits and labels of the test split, computed here without arttl.inference.evaluation."""
    model = ArtClassifier.from_checkpoint(tiny["ckpt"])
    data = H5ImageDataset(tiny["store"] / "test.h5", transform=model.eval_transform())
    x = torch.stack([data[i][0] for i in range(len(data))])
    with torch.inference_mode():
        logits = model.logits(x).numpy().astype(np.float64)
    return {"logits": logits, "labels": np.asarray(data.labels)}


def numpy_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, object]:
    """Textbook definitions, written out: top-k, mean per-class recall and cross-entropy
    (tests/fixtures/numpy_metrics.py), per-class P/R/F1 and the confusion matrix."""
    c = logits.shape[1]
    pred = logits.argmax(axis=1)
    out: dict[str, object] = record(logits, labels, c)
    support = np.bincount(labels, minlength=c)
    tp = np.array([np.sum((pred == j) & (labels == j)) for j in range(c)])
    predicted = np.bincount(pred, minlength=c)
    recall = tp / support
    precision = np.divide(tp, predicted, out=np.zeros(c), where=predicted > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(c), where=denom > 0)
    out.update(precision=precision, recall=recall, f1=f1, support=support, pred=pred)
    confusion = np.zeros((c, c), dtype=int)
    np.add.at(confusion, (labels, pred), 1)
    out["confusion"] = confusion
    return out


@pytest.fixture(scope="module")
def evaluation(tiny: dict[str, Path]) -> Path:
    out = tiny["root"] / "eval"
    evaluate_checkpoint(tiny["ckpt"], out, split="test", top_n=4, mistakes=6, device="cpu")
    return out


# -- evaluate --------------------------------------------------------------------------------


def test_evaluation_metrics_equal_independent_computation(
    evaluation: Path, reference: dict[str, np.ndarray]
) -> None:
    expected = numpy_metrics(reference["logits"], reference["labels"])
    assert 0 < expected["top1"] < 1, "the tiny model should be neither perfect nor useless"
    assert expected["macro_top1"] != pytest.approx(expected["top1"])
    metrics = json.loads((evaluation / "metrics.json").read_text())
    for key in ("top1", "top3", "top5", "macro_top1", "loss"):
        assert metrics[key] == pytest.approx(expected[key], abs=1e-5), key
    assert metrics["samples"] == sum(TEST_COUNTS) and metrics["num_classes"] == len(CLASSES)

    per_class = pd.read_csv(evaluation / "per_class.csv")
    assert per_class["class"].tolist() == list(CLASSES)
    for key in ("precision", "recall", "f1"):
        np.testing.assert_allclose(per_class[key], expected[key], atol=1e-5, err_msg=key)
    assert per_class["support"].tolist() == TEST_COUNTS

    predictions = pd.read_csv(evaluation / "predictions.csv")
    assert predictions["label_1"].tolist() == [CLASSES[i] for i in expected["pred"]]
    assert predictions["label"].tolist() == [CLASSES[i] for i in reference["labels"]]
    confusion = pd.read_csv(evaluation / "confusion_matrix.csv", index_col=0)
    assert confusion.index.tolist() == list(CLASSES)
    np.testing.assert_array_equal(confusion.to_numpy(), expected["confusion"])


def test_evaluation_folder_has_figures_and_summary(
    evaluation: Path, reference: dict[str, np.ndarray]
) -> None:
    for name in ("confusion_matrix.png", "mistakes.png"):
        with Image.open(evaluation / name) as img:
            assert img.format == "PNG" and min(img.size) > 200
    summary = (evaluation / "summary.md").read_text()
    top1 = numpy_metrics(reference["logits"], reference["labels"])["top1"]
    assert f"| top-1 | {100 * top1:.2f} % |" in summary
    assert "## Confusion matrix (4 most frequent classes)" in summary
    assert "![most confident mistakes](mistakes.png)" in summary
    assert not list(evaluation.glob(".*tmp*"))


def test_confusion_plot_is_row_normalised_on_the_most_frequent_classes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import matplotlib.axes

    shown: list[np.ndarray] = []
    real = matplotlib.axes.Axes.imshow
    monkeypatch.setattr(
        matplotlib.axes.Axes,
        "imshow",
        lambda self, data, **kw: (shown.append(np.asarray(data)), real(self, data, **kw))[1],
    )
    names = [f"class{i:02d}" for i in range(40)]
    counts = np.zeros((40, 40), dtype=int)
    for i in range(40):
        counts[i, i] = 1  # support 1 ... except:
    counts[7, 7], counts[7, 3] = 6, 2  # class07: 8 images, 2 taken for class03
    counts[3, 3], counts[30, 30], counts[12, 12] = 5, 4, 3
    path = tmp_path / "cm.png"
    assert plot_confusion(counts, names, path, top_n=4) == [
        "class03",
        "class07",
        "class12",
        "class30",
    ]
    np.testing.assert_allclose(
        shown[0],
        [[1, 0, 0, 0], [0.25, 0.75, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]],
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_confident_mistakes_are_wrong_and_sorted_by_confidence() -> None:
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.7, 0.3], [0.05, 0.95]])
    labels = torch.tensor([0, 0, 0, 1, 1])
    assert confident_mistakes(probs, labels, 5) == [1, 3, 2]
    assert confident_mistakes(probs, labels, 2) == [1, 3]


# -- predict ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def new_images(tiny: dict[str, Path]) -> Path:
    """Images from 'outside the dataset', one broken and one truncated, in nested folders."""
    folder = tiny["root"] / "new"
    rng = np.random.default_rng(5)
    (folder / "sub").mkdir(parents=True)
    for i, colour in enumerate([(40, 60, 200), (200, 40, 40), (40, 170, 60)]):
        colour_image(colour, rng).save(folder / f"img{i}.png")
    colour_image((120, 120, 120), rng).save(folder / "sub" / "grey.jpg")
    (folder / "broken.jpg").write_text("this is not an image")
    good = (folder / "sub" / "grey.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (folder / "notes.txt").write_text("not an image suffix: ignored, not reported")
    return folder


def _run(monkeypatch: pytest.MonkeyPatch, module, tmp_path: Path, *args: str) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(sys, "argv", [module.__name__, *args, f"hydra.run.dir={tmp_path}/hydra"])
    module.main()


def test_predict_folder_skips_broken_files_and_labels_the_rest(
    tiny: dict[str, Path],
    new_images: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    alone = tmp_path / "elsewhere" / "model.ckpt"  # the checkpoint alone, away from its store
    alone.parent.mkdir()
    shutil.copy(tiny["ckpt"], alone)
    out = tmp_path / "out"
    _run(monkeypatch, predict_cli, tmp_path, f"ckpt={alone}", f"input={new_images}", "top_k=3",
         "batch_size=2", f"out_dir={out}")  # fmt: skip
    printed = capsys.readouterr()
    assert "img0.png" in printed.out and "#3" in printed.out
    assert "4 predicted, 2 skipped" in printed.out
    assert "skipped" in printed.err and "broken.jpg" in printed.err

    table = pd.read_csv(out / "predictions.csv")
    good = ["img0.png", "img1.png", "img2.png", "sub/grey.jpg"]
    assert table["path"].tolist() == [str(new_images / g) for g in good]
    rejected = pd.read_csv(out / "rejected.csv")
    assert sorted(Path(p).name for p in rejected["path"]) == ["broken.jpg", "truncated.jpg"]
    assert rejected["reason"].str.len().gt(0).all()

    # The same probabilities, computed here from the checkpoint and the same decoding.
    model = ArtClassifier.from_checkpoint(tiny["ckpt"])
    x = torch.stack([model.eval_transform()(load_rgb(new_images / g)) for g in good])
    probs = model.predict_proba(x).numpy()
    order = np.argsort(-probs, axis=1)[:, :3]
    for rank in range(3):
        assert table[f"label_{rank + 1}"].tolist() == [CLASSES[i] for i in order[:, rank]]
        np.testing.assert_allclose(
            table[f"prob_{rank + 1}"], probs[np.arange(len(good)), order[:, rank]], atol=1e-5
        )
    saved = json.loads((out / "predictions.json").read_text())
    assert saved["top_k"] == 3 and len(saved["predictions"]) == 4
    assert [p["label"] for p in saved["predictions"][0]["top_k"]] == table.iloc[0][
        ["label_1", "label_2", "label_3"]
    ].tolist()
    assert {Path(r["path"]).name for r in saved["rejected"]} == {"broken.jpg", "truncated.jpg"}


def test_predict_input_can_be_a_list_file_or_one_image(
    tiny: dict[str, Path], new_images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    listing = new_images / "list.txt"
    listing.write_text("# images to label\nimg1.png\n\nsub/grey.jpg\nmissing.jpg\n")
    assert gather_inputs(listing) == [new_images / p for p in ("img1.png", "sub/grey.jpg",
                                                              "missing.jpg")]  # fmt: skip
    out = tmp_path / "list"
    _run(monkeypatch, predict_cli, tmp_path, f"ckpt={tiny['ckpt']}", f"input={listing}",
         f"out_dir={out}")  # fmt: skip
    assert len(pd.read_csv(out / "predictions.csv")) == 2
    assert pd.read_csv(out / "rejected.csv")["reason"].tolist() == ["file not found"]
    out = tmp_path / "one"
    _run(monkeypatch, predict_cli, tmp_path, f"ckpt={tiny['ckpt']}",
         f"input={new_images / 'img2.png'}", f"out_dir={out}", "top_k=50")  # fmt: skip
    table = pd.read_csv(out / "predictions.csv")
    assert len(table) == 1 and f"label_{len(CLASSES)}" in table  # top_k capped at the classes
    assert table.filter(like="prob_").sum(axis=1).iloc[0] == pytest.approx(1.0, abs=1e-4)
    out = tmp_path / "several"  # a Hydra list mixing an image and a list file
    _run(monkeypatch, predict_cli, tmp_path, f"ckpt={tiny['ckpt']}",
         f"input=[{new_images / 'img2.png'},{listing}]", f"out_dir={out}")  # fmt: skip
    paths = pd.read_csv(out / "predictions.csv")["path"].tolist()
    assert sorted(Path(p).name for p in paths) == ["grey.jpg", "img1.png", "img2.png"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["input={root}/does_not_exist"], "does_not_exist' does not exist"),
        (["input={root}/new", "ckpt={root}/plain.pt"], "is not an arttl checkpoint"),
        (["input={root}/new", "ckpt={root}/text.ckpt"], "not a readable arttl checkpoint"),
        (["input={root}/new", "ckpt={root}/nothing.ckpt"], "file not found"),
        (["input={root}/new/broken.jpg"], "none of the 1 inputs could be read"),
    ],
)
def test_predict_bad_input_exits_2_with_a_message(
    tiny: dict[str, Path],
    new_images: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    args: list[str],
    message: str,
) -> None:
    root = tiny["root"]
    torch.save({"state_dict": {"w": torch.zeros(2)}, "epoch": 3}, root / "plain.pt")
    (root / "text.ckpt").write_text("not a checkpoint\n")
    args = [a.format(root=root) for a in args]
    if not any(a.startswith("ckpt=") for a in args):
        args.append(f"ckpt={tiny['ckpt']}")
    with pytest.raises(SystemExit) as exit_info:
        _run(monkeypatch, predict_cli, tmp_path, *args, f"out_dir={tmp_path / 'out'}")
    assert exit_info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after any "skipped ..." lines
    assert last.startswith("error: ") and message in last
    assert not (tmp_path / "out").exists()


def test_foreign_checkpoints_are_refused_by_every_entry_point(
    tiny: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    plain = tmp_path / "weights.pth"
    torch.save({"conv.weight": torch.zeros(1)}, plain)
    with pytest.raises(ConfigError, match="is not an arttl checkpoint"):
        load_classifier(plain)
    with pytest.raises(ConfigError, match="is not an arttl checkpoint"):
        evaluate_checkpoint(plain, tmp_path / "eval")
    with pytest.raises(ConfigError, match="is not an arttl checkpoint"):
        export_checkpoint(plain, "torchscript", tmp_path / "m.pt")
    for module, out in ((evaluate_cli, "out_dir"), (export_cli, "out")):
        with pytest.raises(SystemExit) as exit_info:
            _run(monkeypatch, module, tmp_path, f"ckpt={plain}", f"{out}={tmp_path}/x")
        assert exit_info.value.code == 2
        assert "is not an arttl checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "eval").exists() and not (tmp_path / "m.pt").exists()


def test_evaluate_cli_writes_its_folder_and_names_a_missing_store(
    tiny: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    out = tmp_path / "val"
    _run(monkeypatch, evaluate_cli, tmp_path, f"ckpt={tiny['ckpt']}", "split=val",
         f"out_dir={out}", "mistakes=0")  # fmt: skip
    assert "top1" in capsys.readouterr().out
    assert json.loads((out / "metrics.json").read_text())["samples"] == len(CLASSES)
    assert not (out / "mistakes.png").exists()
    with pytest.raises(SystemExit):
        _run(monkeypatch, evaluate_cli, tmp_path, f"ckpt={tiny['ckpt']}",
             f"store.dir={tmp_path / 'nostore'}")  # fmt: skip
    assert "test.h5 not found" in capsys.readouterr().err


# -- one inference path ----------------------------------------------------------------------


def test_evaluate_predict_and_feature_cache_share_one_inference_path(
    tiny: dict[str, Path], new_images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every batch of all three runs ArtClassifier.predict_step, called by runner.predict_batches."""
    calls: list[tuple[str, str, str]] = []
    real = ArtClassifier.predict_step

    def spy(self, batch, *args, **kwargs):
        caller = inspect.currentframe().f_back  # type: ignore[union-attr]
        calls.append((caller.f_globals["__name__"], caller.f_code.co_name, kwargs["output"]))
        return real(self, batch, *args, **kwargs)

    monkeypatch.setattr(ArtClassifier, "predict_step", spy)
    one_path = ("arttl.inference.runner", "predict_batches")

    evaluate_checkpoint(tiny["ckpt"], tmp_path / "eval", batch_size=4, mistakes=0, device="cpu")
    assert calls == [(*one_path, "logits")] * -(-sum(TEST_COUNTS) // 4)  # one call per batch

    calls.clear()
    model = load_classifier(tiny["ckpt"])
    result = predict_images(model, gather_inputs(new_images), batch_size=2)
    assert len(result.table) == 4 and calls and set(calls) == {(*one_path, "probs")}

    calls.clear()
    cached_features(model, tiny["store"], tmp_path / "cache", batch_size=64, device="cpu")
    assert len(calls) == 3 and set(calls) == {(*one_path, "features")}  # train, val, test


# -- export ----------------------------------------------------------------------------------


def _inputs(model: ArtClassifier) -> tuple[torch.Tensor, torch.Tensor]:
    """A real image batch of a size the exporter never saw: uint8 and normalised float."""
    rng = np.random.default_rng(9)
    images = [colour_image((30 * i, 200 - 30 * i, 90), rng) for i in range(5)]
    uint8 = torch.stack([model.eval_transform()(img) for img in images])
    return uint8, model.normalize(uint8)


@pytest.mark.filterwarnings(r"ignore:.*torch\.jit.*deprecated")
def test_torchscript_export_matches_the_checkpoint(
    tiny: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    _run(monkeypatch, export_cli, tmp_path, f"ckpt={tiny['ckpt']}", "format=torchscript")
    assert "matches the checkpoint" in capsys.readouterr().out
    path = tmp_path / "hydra" / "tiny.pt"  # <run folder>/<checkpoint name>.pt by default
    model = ArtClassifier.from_checkpoint(tiny["ckpt"])
    _, x = _inputs(model)
    loaded = torch.jit.load(str(path))
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x), model(x), atol=1e-5, rtol=1e-4)
    sidecar = json.loads(path.with_suffix(".pt.json").read_text())
    assert sidecar["class_names"] == list(CLASSES) and sidecar["input"]["dtype"] == "float32"
    assert sidecar["mean"] == pytest.approx(model.data_config["mean"])
    with pytest.raises(SystemExit) as exit_info:
        _run(monkeypatch, export_cli, tmp_path, f"ckpt={tiny['ckpt']}", "format=tflite")
    assert exit_info.value.code == 2 and "format='tflite'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "include_normalization", [False, pytest.param(True, marks=pytest.mark.slow)]
)
def test_onnx_export_matches_the_checkpoint(
    tiny: dict[str, Path], tmp_path: Path, include_normalization: bool
) -> None:
    ort = pytest.importorskip("onnxruntime", reason="pip install arttl[export] for ONNX")
    pytest.importorskip("onnxscript", reason="pip install arttl[export] for ONNX")
    model = ArtClassifier.from_checkpoint(tiny["ckpt"])
    uint8, x = _inputs(model)
    result = export_checkpoint(
        tiny["ckpt"], "onnx", tmp_path / "model.onnx", include_normalization=include_normalization
    )
    assert result.max_abs_diff is not None and result.max_abs_diff < 1e-4
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"x": (uint8 if include_normalization else x).numpy()})[0]
    with torch.inference_mode():
        want = model.logits(uint8) if include_normalization else model(x)
    np.testing.assert_allclose(got, want.numpy(), atol=1e-4, rtol=1e-3)
    sidecar = json.loads(result.sidecar.read_text())
    assert sidecar["input"]["normalized_inside"] is include_normalization
    assert sidecar["class_names"] == list(CLASSES)
