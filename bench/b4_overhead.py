"""B4: training-step throughput of arttl's LightningModule versus a plain PyTorch loop.

The same ArtClassifier weights, the same uint8 batches held in memory (no data loading), the
same SGD; the plain loop does normalise -> forward -> cross-entropy -> backward -> step and
nothing else. The difference is the framework's cost per step (hooks, metrics, logging).
Steps after ``--warmup`` are timed; runs alternate, the median of ``--repeats`` is reported.

    python bench/b4_overhead.py [--steps 15] [--backbone resnet18] [--size 64] [--batch 32]
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import lightning as L
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from arttl.models.classifier import ArtClassifier


class StepTimer(L.Callback):
    """Seconds from the start of batch ``warmup`` to the end of training."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.seconds = warmup, 0.0, 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup:
            self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:
        self.seconds = time.perf_counter() - self.start


def lightning_run(
    model: ArtClassifier, data: TensorDataset, batch: int, warmup: int, steps: int
) -> float:
    timer = StepTimer(warmup)
    common.quiet_trainer(max_steps=warmup + steps, limit_val_batches=0, callbacks=[timer]).fit(
        model, DataLoader(data, batch_size=batch, shuffle=True)
    )
    return timer.seconds


def plain_run(
    model: ArtClassifier, data: TensorDataset, batch: int, warmup: int, steps: int
) -> float:
    net = model.train()
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=1e-3)
    loader = DataLoader(data, batch_size=batch, shuffle=True)
    step, start = 0, 0.0
    while step < warmup + steps:
        for x, y in loader:
            if step == warmup:
                start = time.perf_counter()
            loss = F.cross_entropy(net(net.normalize(x)), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if step == warmup + steps:
                break
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)

    L.seed_everything(0)
    base = ArtClassifier(args.backbone, 10, mode="fine_tune", weights="none", image_size=args.size)
    n = args.batch * 8
    data = TensorDataset(
        torch.randint(0, 256, (n, 3, args.size, args.size), dtype=torch.uint8),
        torch.randint(0, 10, (n,)),
    )
    times: dict[str, list[float]] = {
        "plain PyTorch loop": [],
        "arttl LightningModule + Trainer": [],
    }
    for _ in range(args.repeats):  # alternate, so background load hits both alike
        times["plain PyTorch loop"].append(
            plain_run(copy.deepcopy(base), data, args.batch, args.warmup, args.steps)
        )
        times["arttl LightningModule + Trainer"].append(
            lightning_run(copy.deepcopy(base), data, args.batch, args.warmup, args.steps)
        )
    rows = [
        {
            "loop": name,
            "steps": args.steps,
            "s/step (median)": common.median(t) / args.steps,
            "images/s": args.batch * args.steps / common.median(t),
            "all runs s": " ".join(f"{v:.2f}" for v in t),
        }
        for name, t in times.items()
    ]
    df = pd.DataFrame(rows)
    plain = df["s/step (median)"].iloc[0]
    df["overhead %"] = 100 * (df["s/step (median)"] / plain - 1)
    cmd = "python bench/b4_overhead.py " + " ".join(argv if argv is not None else sys.argv[1:])
    common.report(
        "b4_overhead",
        f"B4 training step, {args.backbone} fine-tune at {args.size} px, batch {args.batch}, "
        f"threads {torch.get_num_threads()}",
        df,
        cmd.strip(),
        "Target: overhead <= 10 %.",
    )
    return df


if __name__ == "__main__":
    main()
