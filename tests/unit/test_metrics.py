"""One definition of top-k, and no metric taking another's state whatever the first batch is.

torchmetrics merges metrics whose states are equal after the first update into one "compute
group"; with class-sorted val/test batches that made top-3/top-5 report top-1's value.
"""

from __future__ import annotations

import pytest
import torch

from arttl.models.classifier import compute_metrics, has_top_k, make_metrics, metric_record
from tests.fixtures.numpy_metrics import macro_recall, top_k


def first_batch(
    kind: str, c: int, n: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    labels = torch.arange(n) % c
    logits = torch.randn(n, c, generator=gen)
    if kind == "all_right":  # every sample right at top-1 -> equal states for every top-k
        logits[torch.arange(n), labels] = 10.0
    else:  # true class ranked last -> wrong even at top-5, again equal states
        logits[torch.arange(n), labels] = -10.0
    return logits, labels


@pytest.mark.parametrize("num_classes", [3, 5, 6, 10])
@pytest.mark.parametrize("kind", ["all_right", "all_wrong"])
def test_no_metric_takes_another_metrics_state(num_classes: int, kind: str) -> None:
    gen = torch.Generator().manual_seed(num_classes)
    metrics = make_metrics(num_classes, "val/")
    batches = [first_batch(kind, num_classes, 8, gen)]
    for _ in range(6):
        batches.append(
            (
                torch.randn(16, num_classes, generator=gen),
                torch.randint(0, num_classes, (16,), generator=gen),
            )
        )
    for logits, labels in batches:
        metrics.update(logits, labels)
    got = metric_record({k: v.item() for k, v in metrics.compute().items()}, "val/")
    all_logits = torch.cat([b[0] for b in batches]).numpy()
    all_labels = torch.cat([b[1] for b in batches]).numpy()
    for k in (1, 3, 5):
        if has_top_k(k, num_classes):
            assert got[f"top{k}"] == pytest.approx(top_k(all_logits, all_labels, k), abs=1e-6)
        else:
            assert got[f"top{k}"] is None
    assert got["macro_top1"] == pytest.approx(macro_recall(all_logits, all_labels), abs=1e-6)
    if num_classes == 10:  # random logits: the three must differ, as on real data
        assert got["top1"] < got["top3"] < got["top5"]


def test_compute_metrics_matches_the_logged_definition() -> None:
    gen = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(50, 10, generator=gen), torch.randint(0, 10, (50,), generator=gen)
    got = compute_metrics(logits, labels)
    for k in (1, 3, 5):
        assert got[f"top{k}"] == pytest.approx(top_k(logits.numpy(), labels.numpy(), k))
    assert got["loss"] == pytest.approx(torch.nn.functional.cross_entropy(logits, labels).item())
    three = compute_metrics(logits[:, :3], labels % 3)
    assert three["top3"] is None and three["top5"] is None and three["top1"] is not None
