"""Shared helpers of the benchmarks: real-looking test data, timing, and result tables.

Every script imports this module by path (bench/ is not a package), so each runs alone with
``python bench/bN_*.py``.
"""

from __future__ import annotations

import functools
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image
from rich.console import Console
from rich.table import Table

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
SHARED = REPO.parent / "shared" / "data"
AHE = SHARED / "ahe64" / "train_val"
RESULTS = BENCH / "results"
WORK = Path(os.environ.get("ARTTL_BENCH_DIR", "/tmp/arttl_bench"))
sys.path.insert(0, str(REPO / "src"))


def machine() -> str:
    """CPU model and core count, as lscpu reports them (the tables are only comparable per machine)."""
    model = platform.processor() or "unknown"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return f"{model}, {os.cpu_count()} logical cores"


def ahe_files(per_class: int, classes: int = 10) -> list[Path]:
    """The first ``per_class`` real AHE images of the first ``classes`` classes, sorted."""
    folders = sorted(p for p in AHE.iterdir() if p.is_dir())[:classes]
    return [f for d in folders for f in sorted(d.glob("*.jpg"))[:per_class]]


def large_jpegs(count: int, side: int = 1200, seed: int = 0) -> Path:
    """A class-per-folder tree of ``count`` large JPEGs made from real AHE photos.

    Upscaled 64-px photos are smooth and would decode unrealistically fast, so film-grain
    noise restores the entropy (and JPEG size, ~300-500 kB) of a real museum photograph.
    """
    root = WORK / f"large_{count}_{side}"
    done = root / ".complete"
    if done.is_file():
        return root
    rng = np.random.default_rng(seed)
    per_class = -(-count // 10)
    files = ahe_files(per_class)[:count]
    for i, src in enumerate(files):
        out = root / src.parent.name / f"{i:05d}.jpg"
        out.parent.mkdir(parents=True, exist_ok=True)
        aspect = rng.uniform(0.75, 1.33)  # portrait and landscape, like artworks
        size = (side, int(side * aspect)) if aspect > 1 else (int(side / aspect), side)
        img = Image.open(src).convert("RGB").resize(size, Image.Resampling.BICUBIC)
        arr = np.asarray(img, dtype=np.int16) + rng.normal(0, 8, (size[1], size[0], 1))
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(out, quality=90)
    done.write_text("ok")
    return root


def prepare_store(
    root: Path, store: Path, workers: int = 1, force: bool = False, **settings: Any
) -> dict:
    """arttl's own prepare on an image folder (the same call `python -m arttl.prepare` makes)."""
    from arttl.data.build import StoreSettings, prepare_dataset
    from arttl.data.sources import get_reader

    reader = functools.partial(get_reader("imagefolder"))
    return prepare_dataset(
        "imagefolder",
        "class",
        root,
        reader,
        store,
        StoreSettings(**{"fractions": (0.8, 0.1, 0.1), "seed": 0, **settings}),
        num_workers=workers,
        force=force,
    )


def timed(fn: Callable[[], Any], repeats: int) -> tuple[list[float], Any]:
    """Wall-clock seconds of ``repeats`` calls of ``fn`` (and the last result)."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return times, result


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def report(name: str, title: str, df: pd.DataFrame, command: str, notes: str = "") -> None:
    """Print the table and write bench/results/<name>.csv and .md (machine, command, date, load)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    table = Table(title=title)
    for col in df.columns:
        table.add_column(str(col))
    for row in df.itertuples(index=False):
        table.add_row(*[f"{v:.3g}" if isinstance(v, float) else str(v) for v in row])
    console = Console()
    console.print(table)
    header = (
        f"machine: {machine()}  \ncommand: `{command}`  \n"
        f"date: {time.strftime('%Y-%m-%d %H:%M')}  \nload average after run: {load_average()}\n"
    )
    if notes:
        console.print(notes)
    df.to_csv(RESULTS / f"{name}.csv", index=False)
    md = f"### {title}\n\n{header}\n{df.to_markdown(index=False, floatfmt='.3g')}\n"
    if notes:
        md += f"\n{notes}\n"
    (RESULTS / f"{name}.md").write_text(md)


def quiet_trainer(**kwargs: Any) -> Any:
    """A CPU Trainer with no logs, checkpoints or bars, so only the work itself is timed."""
    import lightning as L

    return L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )
