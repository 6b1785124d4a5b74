"""B1: images/s of the training data path (decode + transforms + collate), folder vs arttl store.

(a) a folder of full-size (>= 1,000 px) JPEGs read the torchvision ImageFolder way, with the
same timm training transform; (b) the arttl JPEG store (shorter side 384, the default) and
(c) the raw uint8 store. Each DataLoader is iterated over every image; the median of
``--repeats`` passes is reported.

    python bench/b1_datapath.py [--images 300] [--workers 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import pandas as pd
import timm
from torch.utils.data import DataLoader, Dataset
from torchvision.datasets import ImageFolder

from arttl.data.store import H5ImageDataset, split_file
from arttl.data.transforms import build_transform


def data_config(backbone: str) -> dict:
    model = timm.create_model(backbone, pretrained=False, num_classes=0)
    return timm.data.resolve_model_data_config(model)


def images_per_second(dataset: Dataset, batch: int, workers: int, repeats: int) -> float:
    loader = DataLoader(
        dataset, batch_size=batch, shuffle=True, num_workers=workers, persistent_workers=workers > 0
    )

    def one_pass() -> int:
        return sum(len(y) for _, y in loader)

    one_pass() if workers > 0 else None  # start the persistent workers outside the timing
    times, n = common.timed(one_pass, repeats)
    return n / common.median(times)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--side", type=int, default=1200, help="shorter side of the large JPEGs")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--backbone", default="resnet50")
    args = ap.parse_args(argv)

    root = common.large_jpegs(args.images, args.side)
    cfg = data_config(args.backbone)
    tf = build_transform(cfg, training=True)
    stores = {}
    for fmt in ("jpeg", "raw"):
        store = common.WORK / f"b1_store_{fmt}_{args.images}_{args.side}"
        common.prepare_store(root, store, workers=args.workers, shorter_side=384, format=fmt)
        # The whole store as one split: a file of every image, like train.h5 of a full run.
        stores[fmt] = store
    rows = []
    sources: dict[str, Dataset] = {
        "(a) folder, full-size JPEG (ImageFolder)": ImageFolder(str(root), transform=tf),
    }
    for fmt, store in stores.items():
        sources[f"({'b' if fmt == 'jpeg' else 'c'}) arttl store, {fmt}"] = _AllSplits(store, tf)
    for name, ds in sources.items():
        ips = images_per_second(ds, args.batch, args.workers, args.repeats)
        rows.append({"source": name, "images": len(ds), "workers": args.workers, "images/s": ips})
    df = pd.DataFrame(rows)
    base = df["images/s"].iloc[0]
    df["speed-up vs (a)"] = df["images/s"] / base
    cmd = "python bench/b1_datapath.py " + " ".join(argv if argv is not None else sys.argv[1:])
    common.report(
        "b1_datapath",
        f"B1 training data path, {args.backbone} train transform, batch {args.batch}",
        df,
        cmd.strip(),
        "Target: (b) >= 5x (a).",
    )
    return df


class _AllSplits(Dataset):
    """train + val + test of a store as one dataset, so (b) reads as many images as (a)."""

    def __init__(self, store: Path, transform) -> None:
        self.parts = [
            H5ImageDataset(split_file(store, s), transform) for s in ("train", "val", "test")
        ]
        self.index = [(p, i) for p, part in enumerate(self.parts) for i in range(len(part))]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, k: int):
        p, i = self.index[k]
        return self.parts[p][i]


if __name__ == "__main__":
    main()
