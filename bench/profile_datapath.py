"""cProfile of one pass over the arttl store (B1 (b)) in the main process: where the time goes.

python bench/profile_datapath.py [--images 300] [--format jpeg] [--top 12]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import b1_datapath
import common
from torch.utils.data import DataLoader

from arttl.data.transforms import build_transform


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--format", default="jpeg", choices=["jpeg", "raw"])
    ap.add_argument("--top", type=int, default=12)
    args = ap.parse_args(argv)
    store = common.WORK / f"b1_store_{args.format}_{args.images}_1200"
    if not store.is_dir():
        b1_datapath.main(["--images", str(args.images), "--repeats", "1"])
    tf = build_transform(b1_datapath.data_config("resnet50"), training=True)
    loader = DataLoader(b1_datapath._AllSplits(store, tf), batch_size=32, num_workers=0)
    profile = cProfile.Profile()
    profile.enable()
    for _ in loader:
        pass
    profile.disable()
    pstats.Stats(profile).sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
