"""B6: precision, parity before speed: the demo trained in fp32 and in bf16-mixed, seed by seed.

Each run is arttl's own entry point in a fresh process,

    python -m arttl.train +experiment=demo seed=<s> trainer.precision=<p> channels_last=<cl> ...

(resnet18 from scratch at 64 px on the 400 real AHE photos in data/demo/images; the split is
fixed by store.seed, ``seed`` is the training seed). Variants run interleaved, seed by seed, so
background load hits them alike; the load average is recorded at the start and the end.
Reported per variant: test top-1 (mean ± std over seeds, the lowest-val/loss checkpoint as
always), training images/s (forward + backward + step, epochs after the first, from a timer
callback), seconds per epoch, epochs run (early stopping as in the demo) and wall time.

Parity rule (the one ``arttl.training.precision.CPU_BF16_AUTO`` follows): bf16 holds parity
when |mean test top-1 (bf16) − mean (fp32)| <= max(std fp32, std bf16); it becomes the CPU
default only if it holds parity *and* trains faster.

    python bench/b6_precision.py [--threads 1] [--seeds 0 1 2] [--variants fp32 bf16 bf16_cl]
                                 [--max-epochs 12] [--network 64x32 224x16]

The runs train on whatever ``trainer.accelerator=auto`` finds (on a CUDA machine: the GPU); the
network-only check (``--network``; none to skip) times the four variants' training steps on the
CPU in this process.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import lightning as L
import pandas as pd
import torch

# name -> (trainer.precision, channels_last)
VARIANTS: dict[str, tuple[str, bool]] = {
    "fp32": ("32-true", False),
    "fp32_cl": ("32-true", True),
    "bf16": ("bf16-mixed", False),
    "bf16_cl": ("bf16-mixed", True),
}
BASELINE = "fp32"


class FitTimer(L.Callback):
    """Writes the seconds spent in training steps (per epoch) and images seen to ``out`` (JSON).

    A step is on_train_batch_start → on_train_batch_end: forward, loss, backward, optimiser;
    waiting for the DataLoader and validation are outside it.
    """

    def __init__(self, out: str) -> None:
        self.out = Path(out)
        self.steps: dict[int, list[float]] = {}
        self.images: dict[int, int] = {}
        self.fit_start = 0.0
        self.t0 = 0.0

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.fit_start = time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if pl_module.device.type == "cuda":  # CUDA runs asynchronously: time finished work
            torch.cuda.synchronize()
        self.t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()
        epoch = trainer.current_epoch
        self.steps.setdefault(epoch, []).append(time.perf_counter() - self.t0)
        self.images[epoch] = self.images.get(epoch, 0) + len(batch[1])

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        record = {
            "fit_seconds": time.perf_counter() - self.fit_start,
            "step_seconds": {str(e): sum(v) for e, v in self.steps.items()},
            "images": {str(e): n for e, n in self.images.items()},
            "precision": str(trainer.precision),
            "channels_last": bool(pl_module.hparams.get("channels_last", False)),
            "torch_threads": torch.get_num_threads(),
            "device": str(pl_module.device.type),
        }
        self.out.write_text(json.dumps(record, indent=2))


def train_once(
    variant: str,
    seed: int,
    root: Path,
    max_epochs: int | None,
    extra: list[str],
    threads: int | None = None,
) -> dict[str, Any]:
    precision, channels_last = VARIANTS[variant]
    run_dir = root / "runs" / f"{variant}-seed{seed}"
    timer = run_dir / "timer.json"
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run, never a resume of an older one
    run_dir.mkdir(parents=True)
    cmd = [
        sys.executable,
        "-m",
        "arttl.train",
        "+experiment=demo",
        f"seed={seed}",
        f"trainer.precision={precision}",
        f"channels_last={str(channels_last).lower()}",
        f"paths.root_dir={root}",
        f"hydra.run.dir={run_dir}",
        "save_stable_checkpoint=false",
        "callbacks.progress=null",
        "+callbacks.b6_timer._target_=b6_precision.FitTimer",
        f"+callbacks.b6_timer.out={timer}",
        *([f"trainer.max_epochs={max_epochs}"] if max_epochs else []),
        *extra,
    ]
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(common.BENCH), str(common.REPO / "src")])
    )
    if threads:  # torch reads these when it starts: the intra-op threads of the training run
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=common.REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    (run_dir / "stdout.txt").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    results = json.loads((run_dir / "results.json").read_text())
    t = json.loads(timer.read_text())
    epochs = sorted(int(e) for e in t["step_seconds"])
    later = [e for e in epochs if e > 0] or epochs  # epoch 0 pays oneDNN's first-call set-up
    step_s = sum(t["step_seconds"][str(e)] for e in later)
    images = sum(t["images"][str(e)] for e in later)
    return {
        "variant": variant,
        "precision": t["precision"],
        "channels_last": t["channels_last"],
        "seed": seed,
        "test_top1": results["test"]["top1"],
        "val_top1": results["val"]["top1"],
        "test_loss": results["test"]["loss"],
        "best_epoch": results["best_epoch"],
        "device": t["device"],
        "epochs": len(epochs),
        "torch_threads": t["torch_threads"],
        "train_images_per_s": images / step_s,
        "step_s_per_epoch": step_s / len(later),
        "fit_s": t["fit_seconds"],
        "wall_s": wall,
        "load_after": common.load_average(),
    }


def network_step(variant: str, size: int, batch: int, steps: int, warmup: int) -> float:
    """Images/s of plain training steps (normalise, forward, loss, backward, SGD) on one
    in-memory uint8 batch, under the autocast Lightning's ``bf16-mixed`` uses on CPU."""
    from arttl.models.classifier import ArtClassifier

    precision, channels_last = VARIANTS[variant]
    L.seed_everything(0)
    net = ArtClassifier("resnet18", 10, mode="fine_tune", weights="none", image_size=size)
    net.hparams["channels_last"] = channels_last
    net.setup("fit")
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9, nesterov=True)
    x = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8)
    y = torch.randint(0, 10, (batch,))
    start = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16-mixed"):
            loss = torch.nn.functional.cross_entropy(net.logits(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return batch * steps / (time.perf_counter() - start)


def network_table(sizes: list[tuple[int, int]], repeats: int, variants: list[str]) -> pd.DataFrame:
    """The network-only check: every variant at every (size, batch), interleaved, median."""
    rows = []
    for size, batch in sizes:
        steps, warmup = (10, 2) if size <= 96 else (3, 1)
        times: dict[str, list[float]] = {v: [] for v in variants}
        for r in range(repeats):
            for v in variants if r % 2 == 0 else variants[::-1]:
                times[v].append(network_step(v, size, batch, steps, warmup))
        base = common.median(times[BASELINE])
        for v in variants:
            rows.append(
                {
                    "variant": v,
                    "precision": VARIANTS[v][0],
                    "channels_last": VARIANTS[v][1],
                    "size px": size,
                    "batch": batch,
                    "images/s (median)": common.median(times[v]),
                    f"vs {BASELINE}": common.median(times[v]) / base,
                    "all runs": " ".join(f"{t:.1f}" for t in times[v]),
                }
            )
    return pd.DataFrame(rows)


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    rows = []
    base_speed = runs.loc[runs.variant == BASELINE, "train_images_per_s"].median()
    for variant, g in runs.groupby("variant", sort=False):
        top1 = g["test_top1"].tolist()
        rows.append(
            {
                "variant": variant,
                "precision": g["precision"].iloc[0],
                "channels_last": bool(g["channels_last"].iloc[0]),
                "device": g["device"].iloc[0],
                "seeds": len(g),
                "torch threads": int(g["torch_threads"].iloc[0]),
                "test top-1 mean": statistics.mean(top1),
                "test top-1 std": statistics.stdev(top1) if len(top1) > 1 else 0.0,
                "val top-1 mean": g["val_top1"].mean(),
                "train images/s (median)": g["train_images_per_s"].median(),
                f"speed vs {BASELINE}": g["train_images_per_s"].median() / base_speed,
                "s/epoch (median)": g["step_s_per_epoch"].median(),
                "epochs (mean)": g["epochs"].mean(),
                "fit s (median)": g["fit_s"].median(),
            }
        )
    return pd.DataFrame(rows)


def verdict(summary: pd.DataFrame) -> dict[str, Any]:
    """The parity rule of the module doc, for every bf16 variant against fp32."""
    base = summary.set_index("variant").loc[BASELINE]
    out = {}
    for _, row in summary.iterrows():
        if row["variant"] == BASELINE or not str(row["precision"]).startswith("bf16"):
            continue
        delta = row["test top-1 mean"] - base["test top-1 mean"]
        bound = max(row["test top-1 std"], base["test top-1 std"])
        speed = row[f"speed vs {BASELINE}"]
        out[row["variant"]] = {
            "delta_test_top1": float(delta),
            "bound": float(bound),
            "parity": bool(abs(delta) <= bound),
            "speed_vs_fp32": float(speed),
            "faster": bool(speed > 1.0),
            "default_on_this_cpu": bool(abs(delta) <= bound and speed > 1.0),
        }
    return out


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", default=["fp32", "bf16"], choices=VARIANTS)
    ap.add_argument("--max-epochs", type=int, default=None, help="default: the demo's 12")
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads per run (OMP_NUM_THREADS); default: torch's (one per core). On a "
        "shared machine use 1: OpenMP threads that wait for a busy core spin, and measure the "
        "contention rather than the precision",
    )
    ap.add_argument(
        "--network",
        nargs="*",
        default=["64x32", "224x16"],
        help="network-only step check at SIZExBATCH (all four variants); none to skip",
    )
    ap.add_argument("--network-repeats", type=int, default=3)
    ap.add_argument("extra", nargs="*", help="more key=value overrides for every run")
    args = ap.parse_args(argv)
    variants = [BASELINE, *[v for v in args.variants if v != BASELINE]]

    root = common.WORK / "b6"
    load_start = common.load_average()
    start = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.network]
    net = network_table(sizes, args.network_repeats, list(VARIANTS)) if sizes else None
    if net is not None:
        print(net.to_string(index=False), flush=True)
    runs = []
    for seed in args.seeds:  # interleaved: every variant of a seed before the next seed
        order = variants if seed % 2 == 0 else variants[::-1]  # and alternate who goes first
        for variant in order:
            row = train_once(variant, seed, root, args.max_epochs, args.extra, args.threads)
            print(
                f"{variant:8s} seed {seed}: test top-1 {row['test_top1']:.3f}, "
                f"{row['train_images_per_s']:.1f} images/s, {row['epochs']} epochs, "
                f"wall {row['wall_s']:.0f} s (load {row['load_after']})",
                flush=True,
            )
            runs.append(row)
    runs_df = pd.DataFrame(runs)
    summary = summarize(runs_df)
    decision = verdict(summary)
    load_end = common.load_average()
    cmd = "python bench/b6_precision.py " + " ".join(argv if argv is not None else sys.argv[1:])
    notes = (
        f"Load average at start: {load_start}; at end: {load_end}; total "
        f"{time.perf_counter() - start:.0f} s. Parity rule: |Δ mean test top-1| <= max(std) "
        "of the two; bf16 becomes the CPU default only with parity and speed > 1. "
        + "; ".join(
            f"{v}: Δ {d['delta_test_top1']:+.3f} vs bound {d['bound']:.3f} → parity "
            f"{'yes' if d['parity'] else 'no'}, speed {d['speed_vs_fp32']:.2f}× → default "
            f"{'yes' if d['default_on_this_cpu'] else 'no'}"
            for v, d in decision.items()
        )
    )
    common.report(
        "b6_precision",
        f"B6 precision on {'/'.join(sorted(set(runs_df['device'])))}: demo (resnet18 scratch, "
        "64 px, 400 AHE photos), fp32 vs bf16-mixed",
        summary,
        cmd.strip(),
        notes,
    )
    # The per-seed runs and the decision beside the summary that report() wrote.
    out = common.RESULTS / "b6_precision.json"
    record = json.loads(out.read_text())
    record.update(
        load_average_start=load_start,
        load_average_end=load_end,
        runs=json.loads(runs_df.to_json(orient="records")),
        decision=decision,
        network=None if net is None else json.loads(net.to_json(orient="records")),
    )
    out.write_text(json.dumps(record, indent=2) + "\n")
    md = common.RESULTS / "b6_precision.md"
    md.write_text(
        md.read_text()
        + "\nEvery run (interleaved in this order):\n\n"
        + runs_df.to_markdown(index=False, floatfmt=".3g")
        + "\n"
        + (
            ""
            if net is None
            else "\nNetwork only (resnet18 training steps on one in-memory uint8 batch, same "
            f"threads; `--network {' '.join(args.network)}`):\n\n"
            + net.to_markdown(index=False, floatfmt=".3g")
            + "\n"
        )
    )
    return summary


if __name__ == "__main__":
    main()
