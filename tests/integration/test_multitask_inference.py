"""evaluate / predict / export / saliency on a tiny multi-task checkpoint (test_resnet, 64 px).

One network with two heads (``type``: 3 classes, ``material``: 6) on a store where some images
lack one of the labels. Every per-task number is recomputed here, from the model's own logits
(the task's columns) and from the files the commands write, so a task reading another task's
columns, a softmax over all columns or a masked image counted in a task's metrics fails here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir
from torch.utils.data import DataLoader

from arttl import evaluate as evaluate_cli
from arttl import predict as predict_cli
from arttl.config import CONF_DIR
from arttl.data.store import H5ImageDataset, write_split
from arttl.data.transforms import build_transform
from arttl.errors import ConfigError
from arttl.explain.models import load_models
from arttl.inference.evaluation import evaluate_checkpoint
from arttl.inference.exporting import export_checkpoint, run_exported
from arttl.models.classifier import ArtClassifier
from arttl.saliency import run_saliency
from tests.fixtures.numpy_metrics import task_records
from tests.fixtures.tiny_runs import colour_image, jpeg_bytes
from tests.fixtures.training import quiet_trainer

TASKS = {
    "type": ["jewellery", "pottery", "statuary"],
    "material": ["bronze", "faience", "limestone", "wood", "gold", "glass"],
}


def task_labels(i: int) -> list[int]:
    """Image ``i``'s labels: every 5th has no type, every 4th no material (-1)."""
    return [i % 3 if i % 5 else -1, (i * 5) % 6 if i % 4 else -1]


def write_store(store: Path, tasks: dict[str, list[str]], counts: dict[str, int]) -> Path:
    rng = np.random.default_rng(0)
    store.mkdir(parents=True, exist_ok=True)
    for split, n in counts.items():
        labels = np.array([task_labels(i)[: len(tasks)] for i in range(n)])
        images = [
            jpeg_bytes(colour_image((70 * (i % 3), 40 * (i % 6), 120), rng)) for i in range(n)
        ]
        paths = [f"/raw/{split}/{i}.jpg" for i in range(n)]
        attrs = {"source": "tiny", "challenge": "+".join(tasks), "counts": "{}", "split": split}
        names = next(iter(tasks.values()))
        write_split(store / f"{split}.h5", images, labels, paths, names, attrs, task_classes=tasks)
    return store


def fit_and_save(model: ArtClassifier, data: object, path: Path) -> Path:
    trainer = quiet_trainer(max_epochs=1)
    trainer.fit(model, DataLoader(data, batch_size=8))  # type: ignore[arg-type]
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def mt(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A two-task store and checkpoint, and a one-task ``material`` checkpoint (about 3 s)."""
    root = tmp_path_factory.mktemp("multitask")
    store = write_store(root / "store", TASKS, {"train": 16, "test": 14})
    L.seed_everything(0, verbose=False)
    model = ArtClassifier(
        "test_resnet", 0, tasks=TASKS, image_size=64, store=str(store), dataset="tiny",
        challenge="type+material", optimizer=lambda ps: torch.optim.SGD(ps, lr=0.05),
    )  # fmt: skip
    train = H5ImageDataset(store / "train.h5", build_transform(model.data_config), tasks=[*TASKS])
    ckpt = fit_and_save(model, train, root / "mt.ckpt")
    single = ArtClassifier(
        "test_resnet", 6, class_names=TASKS["material"], image_size=64, challenge="material"
    )
    x = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8)
    one = fit_and_save(single, list(zip(x, torch.arange(4), strict=True)), root / "one.ckpt")
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):
        colour_image((60 * i, 90, 200), rng).save(images / f"art{i}.jpg")
    return {"root": root, "store": store, "ckpt": ckpt, "one": one, "images": images}


@pytest.fixture(scope="module")
def reference(mt: dict[str, Path]) -> dict[str, torch.Tensor]:
    """The test split's logits (N, 9) and labels (N, 2), computed here without arttl.inference."""
    model = ArtClassifier.from_checkpoint(mt["ckpt"])
    data = H5ImageDataset(mt["store"] / "test.h5", model.eval_transform(), tasks=[*TASKS])
    x = torch.stack([data[i][0] for i in range(len(data))])
    with torch.inference_mode():
        logits = model.logits(x)
    return {"logits": logits, "labels": torch.from_numpy(np.asarray(data.labels))}


def _cli(monkeypatch: pytest.MonkeyPatch, module: object, tmp_path: Path, *args: str) -> None:
    monkeypatch.setattr(sys, "argv", ["arttl", *args, f"hydra.run.dir={tmp_path}/hydra"])
    module.main()  # type: ignore[attr-defined]


# -- evaluate ---------------------------------------------------------------------------------


def metrics_from_predictions(table: pd.DataFrame, classes: list[str]) -> dict[str, float | None]:
    """top-k, macro top-1 and cross-entropy from a written predictions.csv alone (numpy)."""
    ranks = [c for c in table if c.startswith("label_")]
    out: dict[str, float | None] = {}
    for k in (1, 3, 5):
        if k > 1 and (k >= len(classes) or k > len(ranks)):
            out[f"top{k}"] = None  # a top-k over all classes is not measured
            continue
        hits = [(table[f"label_{r}"] == table["label"]).to_numpy() for r in range(1, k + 1)]
        out[f"top{k}"] = float(np.any(hits, axis=0).mean())
    # mean recall over the classes that occur (as a label or a prediction): torchmetrics' rule
    present = [c for c in classes if (table["label"] == c).any() or (table["label_1"] == c).any()]
    recall = [(table.loc[table["label"] == c, "label_1"] == c).mean() for c in present]
    out["macro_top1"] = float(np.nan_to_num(recall).mean())
    out["loss"] = float(-np.log(table["prob_true"].to_numpy()).mean())
    return out


def test_evaluate_writes_a_folder_per_task_with_its_own_metrics(
    mt: dict[str, Path],
    reference: dict[str, torch.Tensor],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    out = tmp_path / "eval"
    import matplotlib.axes

    titles: list[str] = []  # each task's figures name their task
    real_title = matplotlib.axes.Axes.set_title
    monkeypatch.setattr(
        matplotlib.axes.Axes, "set_title",
        lambda self, text, *a, **k: titles.append(text) or real_title(self, text, *a, **k),
    )  # fmt: skip
    _cli(monkeypatch, evaluate_cli, tmp_path, f"ckpt={mt['ckpt']}", f"out_dir={out}", "mistakes=4")
    shown = capsys.readouterr().out
    for task in TASKS:
        assert f"Confusion matrix — {task}, rows normalised" in titles
    assert "type" in shown and "material" in shown and "mean" in shown
    summary = json.loads((out / "metrics.json").read_text())
    expected = task_records(reference["logits"].numpy(), reference["labels"].numpy(), TASKS)
    labels = reference["labels"].numpy()
    assert summary["tasks"] == list(TASKS) and summary["samples"] == len(labels)
    for i, (task, classes) in enumerate(TASKS.items()):
        folder = out / task
        for name in ("metrics.json", "per_class.csv", "predictions.csv", "confusion_matrix.csv",
                     "confusion_matrix.png", "summary.md"):  # fmt: skip
            assert (folder / name).is_file(), f"{task}/{name}"
        metrics = json.loads((folder / "metrics.json").read_text())
        table = pd.read_csv(folder / "predictions.csv")
        labelled = np.flatnonzero(labels[:, i] >= 0)
        # images without this task's label are left out, and the index column says which are kept
        assert table["index"].tolist() == labelled.tolist()
        assert metrics["samples"] == len(labelled) and metrics["unlabelled"] == len(labels) - len(
            labelled
        )
        assert table["label"].tolist() == [classes[j] for j in labels[labelled, i]]
        assert metrics["num_classes"] == len(classes) and metrics["task"] == task
        recomputed = metrics_from_predictions(table, classes)
        for key, value in expected[task].items():
            assert metrics[key] == pytest.approx(value, abs=1e-6), (task, key)
            assert summary["per_task"][task][key] == pytest.approx(value, abs=1e-6)
            if value is None:
                assert recomputed[key] is None
            else:  # the CSV holds 6 decimals
                assert recomputed[key] == pytest.approx(value, abs=1e-4), (task, key)
        # the task's own softmax: its columns of the logits, never all nine
        task_logits = reference["logits"][labelled][:, slice(*_bounds(task))]
        np.testing.assert_allclose(
            table["prob_1"], task_logits.softmax(1).max(1).values.numpy(), atol=1e-5
        )
        confusion = pd.read_csv(folder / "confusion_matrix.csv", index_col=0)
        assert confusion.to_numpy().sum() == len(labelled) and list(confusion.columns) == classes
    assert summary["top1"] == pytest.approx(np.mean([expected[t]["top1"] for t in TASKS]))
    text = (out / "summary.md").read_text()
    assert "[material](material/summary.md)" in text and "left out" in text


def _bounds(task: str) -> tuple[int, int]:
    start = 0 if task == "type" else len(TASKS["type"])
    return start, start + len(TASKS[task])


def test_evaluate_refuses_a_store_without_the_checkpoints_tasks(
    mt: dict[str, Path], tmp_path: Path
) -> None:
    other = {"type": TASKS["type"], "period": ["late", "new"]}
    store = write_store(tmp_path / "other", other, {"test": 4})
    with pytest.raises(ConfigError) as err:
        evaluate_checkpoint(mt["ckpt"], tmp_path / "e", store=store / "test.h5")
    message = str(err.value)
    assert "['type', 'period']" in message and "['type', 'material']" in message
    assert "material missing" in message
    with pytest.raises(ConfigError, match="one-task network"):
        evaluate_checkpoint(mt["one"], tmp_path / "e", store=mt["store"] / "test.h5")
    assert not (tmp_path / "e").exists()


# -- predict ----------------------------------------------------------------------------------


def test_predict_writes_a_column_group_per_task(
    mt: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "pred"
    _cli(monkeypatch, predict_cli, tmp_path, f"ckpt={mt['ckpt']}", f"input={mt['images']}",
         f"out_dir={out}", "top_k=4")  # fmt: skip
    table = pd.read_csv(out / "predictions.csv")
    expected = ["path"]
    for task, classes in TASKS.items():
        for r in range(1, min(4, len(classes)) + 1):  # type has 3 classes: 3 ranks, not 4
            expected += [f"{task}_label_{r}", f"{task}_prob_{r}"]
    assert list(table.columns) == expected
    model = ArtClassifier.from_checkpoint(mt["ckpt"])
    transform = model.eval_transform()
    from arttl.data.images import load_rgb

    x = torch.stack([transform(load_rgb(p, shorter_side=384)) for p in table["path"]])
    with torch.inference_mode():
        logits = model.logits(x)
    for task, classes in TASKS.items():
        probs = table[[c for c in table if c.startswith(f"{task}_prob_")]].to_numpy()
        assert (probs.sum(axis=1) <= 1 + 1e-5).all() and (np.diff(probs, axis=1) <= 0).all()
        top1 = logits[:, slice(*_bounds(task))].argmax(1).numpy()
        assert table[f"{task}_label_1"].tolist() == [classes[j] for j in top1]
    saved = json.loads((out / "predictions.json").read_text())
    assert saved["tasks"] == {"type": 3, "material": 4}
    first = saved["predictions"][0]["tasks"]
    assert [r["label"] for r in first["material"]] == table.filter(like="material_label").iloc[
        0
    ].tolist()


# -- export -----------------------------------------------------------------------------------


@pytest.mark.filterwarnings(r"ignore:.*torch\.jit.*deprecated")
@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_has_one_output_per_task_matching_the_checkpoint(
    mt: dict[str, Path], tmp_path: Path, fmt: str
) -> None:
    if fmt == "onnx":
        pytest.importorskip("onnxruntime", reason="pip install arttl[export] for ONNX")
        pytest.importorskip("onnxscript", reason="pip install arttl[export] for ONNX")
    result = export_checkpoint(mt["ckpt"], fmt, tmp_path / "model", include_normalization=True)
    assert result.task_diffs is not None and list(result.task_diffs) == list(TASKS)
    sidecar = json.loads(result.sidecar.read_text())
    assert sidecar["tasks"] == TASKS
    assert [o["name"] for o in sidecar["outputs"]] == list(TASKS)
    assert sidecar["max_abs_diff_per_task"] == pytest.approx(result.task_diffs)
    model = ArtClassifier.from_checkpoint(mt["ckpt"])
    x = torch.randint(0, 256, (5, 3, 64, 64), dtype=torch.uint8)
    got = run_exported(result.path, fmt, x, list(TASKS))
    assert got is not None and len(got) == len(TASKS)
    with torch.inference_mode():
        logits = model.logits(x)
    for task, out in zip(TASKS, got, strict=True):
        assert out.shape == (5, len(TASKS[task]))
        torch.testing.assert_close(out, logits[:, slice(*_bounds(task))], atol=1e-4, rtol=1e-3)
    if fmt == "onnx":
        import onnx

        graph = onnx.load(str(result.path)).graph
        assert [o.name for o in graph.output] == list(TASKS)


# -- saliency ---------------------------------------------------------------------------------


def _saliency_cfg(*overrides: str):
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose(
            "saliency", overrides=["method=saliency", "deletion_steps=1", "device=cpu", *overrides]
        )


def test_saliency_explains_the_chosen_task_and_names_it(
    mt: dict[str, Path], tmp_path: Path
) -> None:
    image = mt["images"] / "art0.jpg"
    cfg = _saliency_cfg(f"images={image}", f"models=[{mt['ckpt']},{mt['one']}]", "task=material")
    paths = run_saliency(cfg, tmp_path / "out")
    assert paths["figure"].stat().st_size > 0 and paths["figure"].suffix == ".png"
    saved = np.load(paths["maps"])
    assert saved["tasks"].tolist() == ["material", "material"]
    assert set(saved["labels"].ravel()) <= set(TASKS["material"])
    # the probability is the task's softmax over its own columns, at the explained class
    model = ArtClassifier.from_checkpoint(mt["ckpt"])
    explained = load_models([str(mt["ckpt"])], task="material")[0]
    from PIL import Image

    _, x = explained.preprocess(Image.open(image).convert("RGB"))
    with torch.inference_mode():
        probs = model(x)[:, slice(*_bounds("material"))].softmax(1)[0]
    assert saved["probabilities"][0, 0] == pytest.approx(float(probs.max()), abs=1e-5)
    # default: a multi-task checkpoint's first task
    assert load_models([str(mt["ckpt"])])[0].task == "type"
    # the figure's model names say what each network learnt
    assert explained.name.endswith(f"multi-task: {', '.join(TASKS)}")


def test_saliency_task_errors_name_the_checkpoints_tasks(mt: dict[str, Path]) -> None:
    with pytest.raises(ConfigError) as err:
        load_models([str(mt["ckpt"])], task="period")
    assert "task" in str(err.value) and "material" in str(err.value) and "type" in str(err.value)
    with pytest.raises(ConfigError, match="one-task network for 'material'"):
        load_models([str(mt["one"])], task="type")
