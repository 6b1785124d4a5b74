"""B3: wall time of an off-the-shelf run, feature cache versus the frozen backbone every epoch.

Same model (timm backbone, random weights: nothing is downloaded), same real AHE images from
an arttl store, same linear head, same batch size, validation every epoch. (a) runs the
frozen backbone over every image of every epoch; (b) extracts features once
(``cached_features``) and trains the head on them; (c) is a second run that finds every
split in the cache.

    python bench/b3_offtheshelf.py [--epochs 30] [--per-class 50] [--backbone resnet18]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import lightning as L
import pandas as pd

from arttl.data.datamodule import FeatureDataModule, StoreDataModule
from arttl.data.features import cached_features
from arttl.models.classifier import ArtClassifier


def ahe_folder(per_class: int) -> Path:
    """A folder of symlinks to the first ``per_class`` real AHE images of each class."""
    root = common.WORK / f"ahe_{per_class}"
    if not root.is_dir():
        for src in common.ahe_files(per_class):
            link = root / src.parent.name / src.name
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(src)
    return root


def trainer(epochs: int) -> L.Trainer:
    return common.quiet_trainer(max_epochs=epochs, num_sanity_val_steps=0)


def model(backbone: str, size: int, classes: int) -> ArtClassifier:
    L.seed_everything(0)
    m = ArtClassifier(backbone, classes, mode="off_the_shelf", weights="none", image_size=size)
    return m


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--per-class", type=int, default=50)
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--size", type=int, default=64, help="input size (AHE images are 64 px)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)

    store = common.WORK / f"b3_store_{args.per_class}"
    common.prepare_store(ahe_folder(args.per_class), store, workers=2, shorter_side=None)
    cache = common.WORK / "b3_cache"
    shutil.rmtree(cache, ignore_errors=True)
    rows = []

    m = model(args.backbone, args.size, 10)
    dm = StoreDataModule(
        store, m.data_config, batch_size=args.batch, num_workers=args.workers, augment=False
    )
    start = time.perf_counter()
    trainer(args.epochs).fit(m, datamodule=dm)
    frozen = time.perf_counter() - start
    rows.append({"run": "(a) frozen backbone every epoch", "seconds": frozen})

    for name in ("(b) feature cache, first run", "(c) feature cache, second run"):
        m = model(args.backbone, args.size, 10)
        start = time.perf_counter()
        feats, hits = cached_features(m, store, cache, batch_size=max(64, args.batch))
        extracted = time.perf_counter() - start
        trainer(args.epochs).fit(m, datamodule=FeatureDataModule(feats, args.batch))
        total = time.perf_counter() - start
        rows.append(
            {
                "run": name,
                "seconds": total,
                "extraction s": extracted,
                "cache hits": sum(hits.values()),
            }
        )
    df = pd.DataFrame(rows)
    df["speed-up vs (a)"] = frozen / df["seconds"]
    cmd = "python bench/b3_offtheshelf.py " + " ".join(argv if argv is not None else sys.argv[1:])
    common.report(
        "b3_offtheshelf",
        f"B3 off-the-shelf, {args.epochs} epochs, {args.backbone} at {args.size} px, "
        f"{10 * args.per_class} AHE images, batch {args.batch}",
        df,
        cmd.strip(),
        "Target: (b) >= 15x faster than (a).",
    )
    return df


if __name__ == "__main__":
    main()
