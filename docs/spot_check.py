"""Recompute a run's test top-1 and top-3 without arttl's data or metric code, to check its table cell.

    python docs/spot_check.py outputs/study/study_objects/fine_tune-seed1

Reads the run's results.json (which store, which checkpoint), decodes the store's test images with
h5py + Pillow, preprocesses them with timm's own eval transform for the checkpoint's data config,
runs timm's network with the checkpoint's tensors in fp32, and counts hits with numpy. Prints both
numbers beside results.json's; exits 1 if they differ by more than one image. A multi-task run is
checked task by task: its head's columns split by the checkpoint's tasks, each scored on the test
images that have that task's label (the store's column of the same name).
Written by hand: an independent path is the point.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import timm
import torch
from PIL import Image
from timm.data import create_transform


def independent_top_k(run: Path) -> list[tuple[str, dict[str, float], dict[str, float], int]]:
    """Per task (one for a one-task run, named ""): (task, recomputed {top1, top3}, results.json's,
    number of test images with that task's label)."""
    record = json.loads((run / "results.json").read_text(encoding="utf-8"))
    own = record.get("run_checkpoint") or record["checkpoint"]  # the run's own (older files: first)
    ckpt = torch.load(own, map_location="cpu", weights_only=False)
    hp = ckpt["hyper_parameters"]
    net = timm.create_model(hp["backbone"], pretrained=False, num_classes=0)
    state = ckpt["state_dict"]
    net.load_state_dict({k[9:]: v for k, v in state.items() if k.startswith("backbone.")})
    head = torch.nn.Linear(state["head.weight"].shape[1], state["head.weight"].shape[0])
    head.load_state_dict({"weight": state["head.weight"], "bias": state["head.bias"]})
    transform = create_transform(**hp["data_config"], is_training=False)
    net.eval()
    with h5py.File(Path(record["store"]["dir"]) / "test.h5", "r") as f:
        labels = f["labels"][:]
        store_tasks = json.loads(f.attrs["tasks"]) if "tasks" in f.attrs else None
        logits = []
        with torch.inference_mode():
            for blob in f["images"]:
                image = Image.open(io.BytesIO(bytes(blob))).convert("RGB")
                logits.append(head(net(transform(image)[None])).numpy()[0])
    logits = np.stack(logits)
    if not hp.get("tasks"):
        return [("", *_top_k(logits, labels, record["test"]))]
    out, start = [], 0  # the head's columns: the tasks' classes, one block per task in order
    for task, classes in hp["tasks"].items():
        column = labels[:, store_tasks.index(task)]
        has = column >= 0
        block = logits[has, start : start + len(classes)]
        out.append((task, *_top_k(block, column[has], record["tasks"][task]["test"])))
        start += len(classes)
    return out


def _top_k(logits: np.ndarray, labels: np.ndarray, test: dict) -> tuple[dict, dict, int]:
    """top-1 and top-3 by counting; top-3 is None with 3 classes or fewer (it would be 1)."""
    ranked = np.argsort(-logits, axis=1)
    ks = (1, 3) if logits.shape[1] > 3 else (1,)
    ours = {f"top{k}": float((ranked[:, :k] == labels[:, None]).any(axis=1).mean()) for k in ks}
    theirs = {f"top{k}": float(test[f"top{k}"]) for k in ks}
    return ours | {"top3": ours.get("top3")}, theirs | {"top3": theirs.get("top3")}, len(labels)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders with results.json")
    parser.add_argument("--csv", type=Path, help="also write the comparison to this CSV file")
    args = parser.parse_args(argv)
    worst, rows = 0.0, []
    for run in args.runs:
        for task, ours, theirs, n in independent_top_k(run):
            both = [k for k in ours if ours[k] is not None]
            worst = max(worst, max(abs(ours[k] - theirs[k]) for k in both) * n)
            rows.append(
                {"run": str(run), "task": task, "test_images": n,
                 "recomputed_top1": ours["top1"], "results_json_top1": theirs["top1"],
                 "recomputed_top3": ours["top3"], "results_json_top3": theirs["top3"]}
            )  # fmt: skip
            pct = {k: "—" if v is None else f"{v:.4f}" for k, v in ours.items()}
            was = {k: "—" if v is None else f"{v:.4f}" for k, v in theirs.items()}
            print(
                f"{run}{f' [{task}]' if task else ''}: recomputed top1 {pct['top1']} top3 "
                f"{pct['top3']} | results.json top1 {was['top1']} top3 {was['top3']} "
                f"({n} test images)"
            )
    if args.csv:
        pd.DataFrame(rows).to_csv(args.csv, index=False, float_format="%.4f")
    return 0 if worst <= 1 + 1e-9 else 1


if __name__ == "__main__":
    sys.exit(main())
