"""B5: prediction throughput of arttl's predict path versus a naive eager fp32 loop, and what
channels_last / bf16 autocast / torch.compile add to the network on this CPU.

End to end (decode + transform + network + top-k) on the large JPEGs of B1:
(a) naive: one image at a time, full-size decode, float transform, eager fp32;
(b) ``arttl.inference.prediction.predict_images`` (what ``python -m arttl.predict`` runs: draft decode
to shorter side 384, uint8 batches, DataLoader workers).
Network only, on a preloaded uint8 batch: eager fp32, channels_last, bf16 autocast, both,
and ``torch.compile`` (skip it with ``--no-compile``).

    python bench/b5_predict.py [--images 96] [--backbone resnet18] [--batch 32]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import pandas as pd
import timm.data
import torch
from PIL import Image

from arttl.inference.prediction import predict_images
from arttl.models.classifier import ArtClassifier


@torch.inference_mode()
def naive(model: ArtClassifier, paths: list[Path]) -> int:
    cfg = model.data_config
    tf = timm.data.create_transform(
        **{k: cfg[k] for k in ("input_size", "interpolation", "mean", "std", "crop_pct")}
    )
    for p in paths:
        x = tf(Image.open(p).convert("RGB")).unsqueeze(0)
        model(x).softmax(-1).topk(5)
    return len(paths)


@torch.inference_mode()
def network(model: torch.nn.Module, x: torch.Tensor, bf16: bool, repeats: int) -> float:
    """Images/s of ``model`` on batch ``x`` (already normalised), median of ``repeats``."""
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with ctx:
        model(x)  # warm-up (and compilation)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return len(x) / common.median(times)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=96)
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument(
        "--workers", type=int, default=1, help="decode workers (2 cores: 1 + torch threads)"
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument(
        "--bf16-batch",
        type=int,
        default=8,
        help="bf16 is emulated without AVX512-BF16/AMX: keep it small",
    )
    args = ap.parse_args(argv)

    root = common.large_jpegs(300)  # the B1 files
    paths = sorted(root.rglob("*.jpg"))[: args.images]
    torch.manual_seed(0)
    model = ArtClassifier(args.backbone, 10, weights="none").eval()
    naive(model, paths[:2])  # warm-up
    times: dict[str, list[float]] = {"naive": [], "arttl": []}
    for _ in range(args.repeats):  # alternate, so background load hits both alike
        times["naive"].append(common.timed(lambda: naive(model, paths), 1)[0][0])
        run = lambda: predict_images(  # noqa: E731
            model, paths, batch_size=args.batch, num_workers=args.workers, shorter_side=384
        )
        times["arttl"].append(common.timed(run, 1)[0][0])
    rows = [
        {
            "path": "(a) naive eager fp32 loop, batch 1",
            "scope": "end to end",
            "images/s": len(paths) / common.median(times["naive"]),
        },
        {
            "path": f"(b) arttl predict_images, batch {args.batch}, {args.workers} worker(s)",
            "scope": "end to end",
            "images/s": len(paths) / common.median(times["arttl"]),
        },
    ]
    size = model.data_config["input_size"][-1]
    x = model.normalize(torch.randint(0, 256, (args.batch, 3, size, size), dtype=torch.uint8))
    variants = [("eager fp32", False, False, False), ("channels_last", True, False, False)]
    variants += [("bf16 autocast", False, True, False), ("channels_last + bf16", True, True, False)]
    if not args.no_compile:
        variants.append(("torch.compile fp32", False, False, True))
    for name, cl, bf16, compiled in variants:
        net = ArtClassifier(args.backbone, 10, weights="none").eval()
        net.load_state_dict(model.state_dict())
        inp = x[: args.bf16_batch] if bf16 else x
        if cl:
            net = net.to(memory_format=torch.channels_last)
            inp = inp.contiguous(memory_format=torch.channels_last)
        fn = torch.compile(net) if compiled else net
        start = time.perf_counter()
        try:
            ips = network(fn, inp, bf16, 1 if bf16 else args.repeats)
        except Exception as err:  # a missing compiler toolchain must not lose the other rows
            rows.append(
                {
                    "path": name,
                    "scope": f"network only, failed: {type(err).__name__}",
                    "images/s": float("nan"),
                }
            )
            continue
        rows.append(
            {
                "path": name,
                "scope": f"network only, batch {len(inp)}",
                "images/s": ips,
                "setup+run s": time.perf_counter() - start,
            }
        )
    df = pd.DataFrame(rows)
    eager = df.loc[df["path"] == "eager fp32", "images/s"].iloc[0]
    df["vs eager fp32 network"] = df["images/s"] / eager
    df.loc[df["scope"] == "end to end", "vs eager fp32 network"] = float("nan")
    cmd = "python bench/b5_predict.py " + " ".join(argv if argv is not None else sys.argv[1:])
    common.report(
        "b5_predict",
        f"B5 prediction, {args.backbone} at {size} px, {len(paths)} JPEGs >= 1,000 px, threads {torch.get_num_threads()}",
        df,
        cmd.strip(),
        f"(b) vs (a): {df['images/s'].iloc[1] / df['images/s'].iloc[0]:.2f}x end to end.",
    )
    return df


if __name__ == "__main__":
    main()
