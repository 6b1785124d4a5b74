"""The multi-task head's loss and metrics against hand computations (numpy), with masked labels.

A multi-task batch has one label column per task, -1 where the image has no label for it. The
loss of a task is the cross-entropy over the images that have its label, in the task's own
columns of the stacked head; the training loss is their weighted sum. The metrics of a task are
computed over the images with its label only; the plain ``<stage>/<metric>`` is their mean.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from arttl.models.classifier import (
    ArtClassifier,
    TaskMetrics,
    task_losses,
    task_slices,
    weighted_loss,
)
from tests.fixtures.numpy_metrics import cross_entropy, task_records

TASKS = {  # 6 + 4 + 2 classes: top-3/top-5 exist for some tasks only
    "type": [f"t{i}" for i in range(6)],
    "material": ["bronze", "faience", "limestone", "wood"],
    "period": ["Late Period", "New Kingdom"],
}
COLUMNS = {"type": (0, 6), "material": (6, 10), "period": (10, 12)}


def store_batch(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and (n, 3) labels as a multi-task store gives them: type always labelled,
    material missing for every 3rd image, period for every 2nd (and some images have neither)."""
    rng = np.random.default_rng(seed)
    logits = torch.from_numpy(rng.normal(size=(n, 12)).astype(np.float32))
    labels = np.stack(
        [
            rng.integers(0, 6, n),
            np.where(np.arange(n) % 3 == 0, -1, rng.integers(0, 4, n)),
            np.where(np.arange(n) % 2 == 0, -1, rng.integers(0, 2, n)),
        ],
        axis=1,
    )
    return logits, torch.from_numpy(labels.astype(np.int64))


def np_task(logits: np.ndarray, labels: np.ndarray, task: str) -> tuple[np.ndarray, np.ndarray]:
    """The task's columns and labels over the images that have its label."""
    i = list(TASKS).index(task)
    lo, hi = COLUMNS[task]
    has = labels[:, i] >= 0
    return logits[has, lo:hi], labels[has, i]


def test_task_slices_follow_the_task_order() -> None:
    assert task_slices(TASKS) == {t: slice(*COLUMNS[t]) for t in TASKS}


def test_masked_weighted_loss_equals_a_hand_computation() -> None:
    logits, labels = store_batch(10, seed=1)
    labels[:, 1] = torch.tensor([-1, 2, -1, 0, 3, -1, 1, 1, -1, 2])  # 4 images without material
    weights = {"type": 1.0, "material": 0.5, "period": 0.0}
    logits.requires_grad_(True)
    parts = task_losses(logits, labels, task_slices(TASKS))
    total = weighted_loss(parts, weights)
    x, y = logits.detach().numpy(), labels.numpy()
    expected = {t: cross_entropy(*np_task(x, y, t)) for t in TASKS}
    for task in TASKS:
        assert parts[task][1] == int((y[:, list(TASKS).index(task)] >= 0).sum())
        assert parts[task][0].item() == pytest.approx(expected[task], rel=1e-5)
    by_hand = sum(weights[t] * expected[t] for t in TASKS)
    assert total.item() == pytest.approx(by_hand, rel=1e-5)
    total.backward()
    grad = logits.grad.numpy()
    assert np.all(grad[:, 10:12] == 0)  # period has weight 0: its columns get no gradient
    no_material = y[:, 1] < 0
    assert np.all(grad[no_material, 6:10] == 0)  # a missing label is no target
    assert np.any(grad[~no_material, 6:10] != 0)


def test_a_task_without_labels_in_the_batch_adds_nothing() -> None:
    logits, labels = store_batch(6, seed=2)
    labels[:, 2] = -1
    logits.requires_grad_(True)
    parts = task_losses(logits, labels, task_slices(TASKS))
    assert parts["period"][1] == 0 and parts["period"][0].item() == 0.0
    total = weighted_loss(parts, {})  # default weight 1 each
    x, y = logits.detach().numpy(), labels.numpy()
    by_hand = sum(cross_entropy(*np_task(x, y, t)) for t in ("type", "material"))
    assert total.item() == pytest.approx(by_hand, rel=1e-5)
    total.backward()  # still differentiable: the empty task contributes a zero gradient
    assert torch.all(logits.grad[:, 10:12] == 0)


def test_per_task_epoch_metrics_equal_numpy_over_batches() -> None:
    """TaskMetrics (what training logs) over three store-like batches, one task's labels all
    missing in one batch: per task over its labelled images; plain keys the mean over tasks,
    the loss over tasks with weight > 0 (what checkpoints and early stopping monitor)."""
    metrics = TaskMetrics(TASKS)
    batches = [store_batch(n, seed) for n, seed in ((16, 3), (9, 4), (13, 5))]
    batches[1][1][:, 1] = -1  # no material label in the second batch
    weights = {"type": 1.0, "material": 2.0, "period": 0.0}
    for logits, labels in batches:
        metrics.update("val", logits, labels, task_losses(logits, labels, task_slices(TASKS)))
    got = metrics.compute("val", weights)
    x = torch.cat([b[0] for b in batches]).numpy()
    y = torch.cat([b[1] for b in batches]).numpy()
    want = task_records(x, y, TASKS)
    for task, record in want.items():
        for key, value in record.items():
            if value is None:
                assert f"val/{task}/{key}" not in got
            else:
                assert got[f"val/{task}/{key}"] == pytest.approx(value, abs=1e-5), (task, key)
    assert got["val/top1"] == pytest.approx(np.mean([want[t]["top1"] for t in TASKS]), abs=1e-5)
    assert got["val/macro_top1"] == pytest.approx(
        np.mean([want[t]["macro_top1"] for t in TASKS]), abs=1e-5
    )
    assert "val/top3" not in got  # period has 2 classes: no top-3, so no mean over tasks either
    assert got["val/loss"] == pytest.approx(
        np.mean([want["type"]["loss"], want["material"]["loss"]]), abs=1e-5
    )  # period (weight 0) is not monitored
    # reset for the next epoch: a new epoch with one batch is that batch's numbers only
    logits, labels = batches[0]
    metrics.update("val", logits, labels, task_losses(logits, labels, task_slices(TASKS)))
    again = metrics.compute("val", weights)
    first = task_records(logits.numpy(), labels.numpy(), TASKS)
    assert again["val/type/top1"] == pytest.approx(first["type"]["top1"], abs=1e-6)


def test_a_task_without_any_label_in_the_epoch_logs_nothing() -> None:
    metrics = TaskMetrics(TASKS)
    logits, labels = store_batch(8, seed=6)
    labels[:, 2] = -1
    metrics.update("test", logits, labels, task_losses(logits, labels, task_slices(TASKS)))
    got = metrics.compute("test", {})
    assert not any(k.startswith("test/period/") for k in got)
    assert "test/top1" not in got  # a mean over tasks needs every task's value
    assert got["test/type/top1"] is not None


def test_a_multitask_network_has_one_stacked_head_and_a_softmax_per_task() -> None:
    torch.manual_seed(0)
    model = ArtClassifier("test_resnet", 1, image_size=64, tasks=TASKS).eval()
    assert model.head.out_features == 12 and model.hparams["num_classes"] == 12
    assert model.task_names == list(TASKS) and model.task_slices == task_slices(TASKS)
    x = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8)
    probs = model.predict_proba(x)
    for lo, hi in COLUMNS.values():
        assert torch.allclose(probs[:, lo:hi].sum(1), torch.ones(3), atol=1e-5)
