"""B2: prepare throughput (images/s) on the large JPEGs of B1, with 1 and 2 workers.

Times ``arttl.data.build.prepare_dataset`` (read, decode with JPEG draft, resize, re-encode,
split, write the HDF5 store) with ``force=True``; the median of ``--repeats`` runs.

    python bench/b2_prepare.py [--images 300] [--workers 1 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import pandas as pd


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--side", type=int, default=1200)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--formats", nargs="+", default=["jpeg"], choices=["jpeg", "raw"])
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)

    root = common.large_jpegs(args.images, args.side)
    rows = []
    for fmt in args.formats:
        for workers in args.workers:
            store = common.WORK / f"b2_store_{fmt}_{workers}"
            times, summary = common.timed(
                lambda w=workers, s=store, f=fmt: common.prepare_store(
                    root, s, workers=w, force=True, shorter_side=384, format=f
                ),
                args.repeats,
            )
            n = sum(summary["counts"].values())
            rows.append(
                {
                    "format": fmt,
                    "workers": workers,
                    "images": n,
                    "seconds (median)": common.median(times),
                    "images/s": n / common.median(times),
                }
            )
    df = pd.DataFrame(rows)
    cmd = "python bench/b2_prepare.py " + " ".join(argv if argv is not None else sys.argv[1:])
    common.report(
        "b2_prepare",
        f"B2 prepare throughput, {args.images} JPEGs of shorter side {args.side} -> 384",
        df,
        cmd.strip(),
    )
    return df


if __name__ == "__main__":
    main()
