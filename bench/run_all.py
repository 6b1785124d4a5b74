"""Run B1-B6 in one process, in order, and print every table (``make bench``).

python bench/run_all.py [--quick]    # --quick: smaller sizes, for a smoke test

--quick writes its tables to $ARTTL_BENCH_DIR/results-quick, not bench/results: a smoke test
never replaces a measured table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import b1_datapath
import b2_prepare
import b3_offtheshelf
import b4_overhead
import b5_predict
import b6_precision
import common

QUICK = {
    "b1": ["--images", "60", "--repeats", "1"],
    "b2": ["--images", "60", "--repeats", "1"],
    "b3": ["--epochs", "3", "--per-class", "10"],
    "b4": ["--steps", "4", "--repeats", "1", "--size", "32"],
    "b5": ["--images", "16", "--repeats", "1", "--no-compile", "--bf16-batch", "2"],
    "b6": [
        "--seeds",
        "0",
        "1",
        "--max-epochs",
        "1",
        "--variants",
        "fp32",
        "bf16",
        "--network",
        "32x8",
        "--threads",
        "1",
    ],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    quick = ap.parse_args().quick
    steps = {"b1": b1_datapath, "b2": b2_prepare, "b3": b3_offtheshelf, "b4": b4_overhead}
    steps["b5"] = b5_predict
    steps["b6"] = b6_precision
    if quick:
        common.RESULTS = common.WORK / "results-quick"
    print(f"machine: {common.machine()}")
    timings = {}
    for name, module in steps.items():
        start = time.perf_counter()
        module.main(QUICK[name] if quick else [])
        timings[name] = time.perf_counter() - start
    print(f"machine: {common.machine()}")
    print("wall seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))
    print(f"tables written to {common.RESULTS}")


if __name__ == "__main__":
    main()
