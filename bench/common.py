"""Shared helpers of the benchmarks: real-looking test data, timing, and result tables.

Every script imports this module by path (bench/ is not a package), so each runs alone with
``python bench/bN_*.py``.
"""

from __future__ import annotations

import functools
import json
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


# CPU flags that decide which precision is fast here (see arttl.training.precision).
FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile")
ARM_FLAGS = ("asimd", "bf16", "sve", "svebf16")  # aarch64 /proc/cpuinfo "Features"


def _cpuinfo() -> tuple[str, set[str]]:
    """CPU model name and flag set from /proc/cpuinfo (Linux), else lscpu / platform."""
    model, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key in ("model name", "hardware", "cpu model") and not model:
                model = value.strip()
            elif key in ("flags", "features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    if not model:
        try:
            out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
            for line in out.splitlines():
                if line.startswith("Model name:"):
                    model = line.split(":", 1)[1].strip()
        except (OSError, subprocess.CalledProcessError):
            pass
    return model or platform.processor() or platform.machine() or "unknown", flags


def _gpus() -> list[dict[str, Any]]:
    try:
        import torch

        if not torch.cuda.is_available():
            return []
        gpus = []
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            gpus.append(
                {
                    "name": props.name,
                    "capability": f"{props.major}.{props.minor}",
                    "memory_gib": round(props.total_memory / 2**30, 1),
                    "bf16": bool(torch.cuda.is_bf16_supported(including_emulation=False)),
                }
            )
        return gpus
    except Exception:  # no CUDA build, driver trouble: record "no GPU" rather than fail a bench
        return []


@functools.cache
def machine_info() -> dict[str, Any]:
    """What a benchmark number depends on: CPU model and flags, GPU, library versions.

    Every results file written by ``report`` (and B6) carries this, so a table row is never
    read as a statement about another machine.
    """
    import lightning
    import PIL
    import timm
    import torch

    from arttl.training.precision import cpu_bf16_support

    model, flags = _cpuinfo()
    wanted = ARM_FLAGS if platform.machine().lower() in ("aarch64", "arm64") else FLAGS
    cuda = getattr(torch.version, "cuda", None)
    return {
        "cpu": model,
        "architecture": platform.machine(),
        "logical_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_flags": {f: f in flags for f in wanted},
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_bf16": cpu_bf16_support(),
        "gpus": _gpus(),
        "cuda_build": cuda,
        "os": platform.platform(),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "timm": timm.__version__,
            "lightning": lightning.__version__,
            "pillow": PIL.__version__,
        },
    }


def machine() -> str:
    """One line: CPU model, cores, the flags that matter, GPU (tables compare only per machine)."""
    info = machine_info()
    flags = [f for f, on in info["cpu_flags"].items() if on]
    gpus = ", ".join(g["name"] for g in info["gpus"]) or "no GPU"
    return (
        f"{info['cpu']}, {info['logical_cores']} logical cores, flags: {' '.join(flags) or 'none'}; "
        f"{gpus}"
    )


def machine_markdown() -> str:
    """The machine block of a results .md file."""
    info = machine_info()
    v = info["versions"]
    flags = ", ".join(f"{f} {'yes' if on else 'no'}" for f, on in info["cpu_flags"].items())
    bf16 = info["cpu_bf16"]
    gpus = "; ".join(
        f"{g['name']} (sm {g['capability']}, {g['memory_gib']} GiB, native bf16 {g['bf16']})"
        for g in info["gpus"]
    )
    return (
        f"machine: {info['cpu']}, {info['logical_cores']} logical cores ({info['architecture']}), "
        f"torch threads {info['torch_threads']}  \n"
        f"CPU flags: {flags}; torch CPU capability {info['torch_cpu_capability']}, "
        f"native bf16 {bf16['native_bf16']}  \n"
        f"GPU: {gpus or 'none'}  \n"
        f"versions: torch {v['torch']}, timm {v['timm']}, lightning {v['lightning']}, "
        f"Pillow {v['pillow']}, Python {v['python']}  \n"
    )


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
    from arttl.data.sources.imagefolder import read_imagefolder

    reader = functools.partial(read_imagefolder)
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
    """Print the table and write bench/results/<name>.csv, .md and .json.

    The .md starts with the machine block (CPU model and flags, GPU, versions), command, date and
    load; the .json holds the same as data (``machine_info()``) with the rows; the .csv gets a
    ``machine`` column, so a row copied out of it still says where it was measured.
    """
    RESULTS.mkdir(parents=True, exist_ok=True)
    table = Table(title=title)
    for col in df.columns:
        table.add_column(str(col))
    for row in df.itertuples(index=False):
        table.add_row(*[f"{v:.3g}" if isinstance(v, float) else str(v) for v in row])
    console = Console()
    console.print(table)
    date, load = time.strftime("%Y-%m-%d %H:%M"), load_average()
    header = (
        f"{machine_markdown()}command: `{command}`  \n"
        f"date: {date}  \nload average after run: {load}\n"
    )
    if notes:
        console.print(notes)
    console.print(f"machine: {machine()}")
    df.assign(machine=machine()).to_csv(RESULTS / f"{name}.csv", index=False)
    md = f"### {title}\n\n{header}\n{df.to_markdown(index=False, floatfmt='.3g')}\n"
    if notes:
        md += f"\n{notes}\n"
    (RESULTS / f"{name}.md").write_text(md)
    record = {
        "title": title,
        "command": command,
        "date": date,
        "load_average_after": load,
        "machine": machine_info(),
        "rows": json.loads(df.to_json(orient="records")),
        "notes": notes,
    }
    (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")


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
