"""A short real run on the embedded demo data must beat the majority-class baseline."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from arttl.training.run import run_training
from tests.fixtures.training import compose_train

DEMO = Path(__file__).resolve().parents[2] / "data" / "demo" / "images"


def test_short_demo_run_beats_majority_baseline(tmp_path):
    cfg = compose_train(
        tmp_path,
        "+experiment=demo",
        f"dataset.root={DEMO}",
        "backbone=test_resnet",
        "backbone.image_size=48",
        "trainer.max_epochs=8",
        "data.batch_size=32",
    )
    record = run_training(cfg, cfg.run_dir)
    splits = pd.read_csv(Path(cfg.store.dir) / "splits.csv")
    test = splits[splits["split"] == "test"]
    majority = test["label"].value_counts().iloc[0] / len(test)
    assert record["num_classes"] == 10 and record["samples"]["test"] == len(test)
    assert record["test"]["top1"] > majority + 0.05, (record["test"], majority)
