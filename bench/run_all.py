"""Run B1-B5 in one process, in order, and print every table (``make bench``).

python bench/run_all.py [--quick]    # --quick: smaller sizes, for a smoke test
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
import common

QUICK = {
    "b1": ["--images", "60", "--repeats", "1"],
    "b2": ["--images", "60", "--repeats", "1"],
    "b3": ["--epochs", "3", "--per-class", "10"],
    "b4": ["--steps", "4", "--repeats", "1", "--size", "32"],
    "b5": ["--images", "16", "--repeats", "1", "--no-compile", "--bf16-batch", "2"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    quick = ap.parse_args().quick
    steps = {"b1": b1_datapath, "b2": b2_prepare, "b3": b3_offtheshelf, "b4": b4_overhead}
    steps["b5"] = b5_predict
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
