"""GPU check: B1 on the GPU box, and ResNet-50 fine-tuning throughput (bf16, channels_last,
batch 256) fed by synthetic tensors versus the real arttl store (CPU decode, and nvJPEG).

Goal: the store-fed run reaches >= 90 % of the synthetic-input run. Needs CUDA.

    python bench/gpu_check.py [--steps 30] [--workers 16] [--images 2000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import b1_datapath
import common
import pandas as pd
import torch
import torch.nn.functional as F

from arttl.data.datamodule import StoreDataModule
from arttl.models.classifier import ArtClassifier


def batches_synthetic(batch: int, size: int):
    x = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, device="cuda")
    y = torch.randint(0, 10, (batch,), device="cuda")
    while True:
        yield x, y


def batches_store(dm: StoreDataModule):
    while True:
        for batch in dm.train_dataloader():
            x, y = dm.on_before_batch_transfer(batch, 0) if dm.gpu_decode else batch
            yield x.to("cuda", non_blocking=True), y.to("cuda", non_blocking=True)


def throughput(model: ArtClassifier, batches, steps: int, warmup: int, batch: int) -> float:
    """Images/s of full training steps (normalise, forward, loss, backward, SGD) in bf16."""
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, nesterov=True)
    for i in range(warmup + steps):
        if i == warmup:
            torch.cuda.synchronize()
            start = time.perf_counter()
        x, y = next(batches)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = F.cross_entropy(model.logits(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--images", type=int, default=2000)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit("gpu_check needs CUDA; run it on a GPU machine.")
    print(f"machine: {common.machine()}")  # also in every results file: common.machine_info()

    b1_datapath.main(["--images", str(args.images), "--workers", str(args.workers)])
    root = common.large_jpegs(args.images)
    store = common.WORK / f"b1_store_jpeg_{args.images}_1200"
    model = ArtClassifier("resnet50", 10, weights="none", channels_last=True).cuda()
    model.to(memory_format=torch.channels_last).train()
    size = model.data_config["input_size"][-1]
    rows = [
        {
            "input": "synthetic uint8 on GPU",
            "images/s": throughput(
                model, batches_synthetic(args.batch, size), args.steps, args.warmup, args.batch
            ),
        }
    ]
    for gpu_decode in (False, True):
        dm = StoreDataModule(
            store, model.data_config, args.batch, args.workers, gpu_decode=gpu_decode
        )
        dm.setup()
        ips = throughput(model, batches_store(dm), args.steps, args.warmup, args.batch)
        label = "arttl store, nvJPEG decode" if gpu_decode else "arttl store, CPU workers"
        rows.append({"input": label, "images/s": ips})
    df = pd.DataFrame(rows)
    df["vs synthetic"] = df["images/s"] / df["images/s"].iloc[0]
    cmd = "python bench/gpu_check.py " + " ".join(argv if argv is not None else sys.argv[1:])
    common.report(
        "gpu_check",
        f"ResNet-50 fine-tuning, bf16, channels_last, batch {args.batch}, {torch.cuda.get_device_name()}",
        df,
        cmd.strip(),
        f"{root}: goal store-fed >= 90 % of synthetic. CUDA {torch.version.cuda}, cuDNN "
        f"{torch.backends.cudnn.version()}, {torch.cuda.get_device_name()} (compute capability "
        f"{'.'.join(map(str, torch.cuda.get_device_capability()))}).",
    )
    return df


if __name__ == "__main__":
    main()
