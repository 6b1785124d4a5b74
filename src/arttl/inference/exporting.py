"""A checkpoint as a standalone ONNX or TorchScript model, checked against the checkpoint.

The exported network is ``backbone + head`` as a plain ``nn.Module`` (no Lightning), taking a
float32 (B, 3, H, W) batch already normalised with the data config's mean/std, exactly like
``ArtClassifier.forward``, and returning logits. With ``include_normalization`` it takes uint8
RGB (0..255) instead and normalises inside, for runtimes where preprocessing is awkward.
Either way a sidecar JSON carries class names, mean/std, input size and resize/crop settings:
the exported file alone does not know what its outputs mean.

A multi-task checkpoint exports one output per task, in task order: ONNX outputs named by
the tasks, a TorchScript module returning a tuple of per-task logits. The sidecar lists the
tasks with their class names and output index (``tasks``, ``outputs``), and the check compares
every task's output with the checkpoint's own columns for that task.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

import arttl
from arttl.atomic import atomic_path, write_json_atomic
from arttl.errors import ConfigError, choice_error
from arttl.inference.prediction import load_classifier
from arttl.models.classifier import ArtClassifier, normalize_pixels

FORMATS = ("onnx", "torchscript")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}
INPUT_NAME, OUTPUT_NAME = "x", "logits"


class ExportMismatch(RuntimeError):
    """The exported model's outputs differ from the checkpoint's: arttl's failure, not the user's
    (the export command exits 1 with the difference)."""


class InferenceNet(nn.Module):
    """The classifier without Lightning: (normalised float | uint8) images -> logits; for a
    multi-task checkpoint a tuple of each task's logits (its columns of the one head), in task
    order, so each exported output carries one task's name."""

    def __init__(self, model: ArtClassifier, include_normalization: bool = False) -> None:
        super().__init__()
        self.backbone = model.backbone
        self.head = model.head
        self.include_normalization = include_normalization
        slices = model.task_slices.values() if model.task_names is not None else ()
        self.bounds = [(s.start, s.stop) for s in slices]  # plain ints: traced as constants
        # The classifier keeps mean/std scaled to 0..255, so uint8 input needs no /255 first.
        self.register_buffer("mean", model.mean.detach().clone())
        self.register_buffer("std", model.std.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        if self.include_normalization:
            x = normalize_pixels(x, self.mean, self.std)
        logits = self.head(self.backbone(x))
        if not self.bounds:
            return logits
        return tuple(logits[:, a:b] for a, b in self.bounds)


@dataclass
class ExportResult:
    path: Path
    sidecar: Path
    max_abs_diff: float | None  # None when the runtime to check with is not installed
    task_diffs: dict[str, float] | None = None  # multi-task: the largest difference per task


def output_names(model: ArtClassifier) -> list[str]:
    """The exported outputs: ``logits``, or one per task named by the task (multi-task)."""
    if model.task_names is None:
        return [OUTPUT_NAME]
    if INPUT_NAME in model.task_names:
        raise ConfigError(
            f"a task is named {INPUT_NAME!r}, the exported input's name; the exported file "
            "cannot name an output so. Rename the task (dataset.challenge) to export it."
        )
    return list(model.task_names)


def example_input(model: ArtClassifier, batch: int, include_normalization: bool) -> torch.Tensor:
    _, h, w = model.data_config["input_size"]
    gen = torch.Generator().manual_seed(batch)
    if include_normalization:
        return torch.randint(0, 256, (batch, 3, h, w), dtype=torch.uint8, generator=gen)
    return torch.randn(batch, 3, h, w, generator=gen)


def _reference(model: ArtClassifier, x: torch.Tensor) -> list[torch.Tensor]:
    """What the checkpoint itself answers for ``x``: its logits, or each task's columns of
    them (multi-task), in the order of the exported outputs."""
    with torch.inference_mode():
        logits = model.logits(x) if x.dtype == torch.uint8 else model(x)
    if model.task_names is None:
        return [logits]
    return [logits[:, cols] for cols in model.task_slices.values()]


@contextlib.contextmanager
def _quiet_jit() -> Iterator[None]:
    """torch.jit is deprecated upstream but still the format many C++/mobile runtimes load."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit.*deprecated", category=Warning)
        yield


def _export_torchscript(net: nn.Module, example: torch.Tensor, path: Path) -> None:
    with _quiet_jit():
        # export_checkpoint checks the saved file against the checkpoint, on another batch size
        traced = torch.jit.trace(net, example, check_trace=False)
        with atomic_path(path) as tmp:
            torch.jit.save(traced, str(tmp))


def _export_onnx(
    net: nn.Module, example: torch.Tensor, path: Path, opset: int | None, outputs: list[str]
) -> None:
    missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(
            f"format=onnx needs the {' and '.join(missing)} package(s): "
            f"pip install {' '.join(missing)} (or use format=torchscript)."
        )
    batch = torch.export.Dim("batch", min=1)
    for name in ("onnx_ir", "onnxscript"):  # per-pass INFO lines are noise here
        logging.getLogger(name).setLevel(logging.WARNING)
    with atomic_path(path) as tmp:
        torch.onnx.export(
            net,
            (example,),
            str(tmp),
            input_names=[INPUT_NAME],
            output_names=outputs,
            dynamic_shapes={INPUT_NAME: {0: batch}},
            opset_version=opset,
            dynamo=True,
            external_data=False,  # one file (< 2 GB): a separate .data file would miss the rename
            verbose=False,
        )


def run_exported(
    path: Path, fmt: str, x: torch.Tensor, outputs: list[str] | None = None
) -> torch.Tensor | list[torch.Tensor] | None:
    """The exported file's logits for ``x``; with ``outputs`` (a multi-task export's output
    names) a list of those outputs, in that order. None for ONNX when onnxruntime is not
    installed."""
    if fmt == "torchscript":
        with _quiet_jit(), torch.inference_mode():
            loaded = torch.jit.load(str(path), map_location="cpu")
            got = loaded(x)
        return got if outputs is None else list(got)
    if importlib.util.find_spec("onnxruntime") is None:
        return None
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    arrays = session.run(outputs or [OUTPUT_NAME], {INPUT_NAME: x.numpy()})
    tensors = [torch.from_numpy(a) for a in arrays]
    return tensors[0] if outputs is None else tensors


def _outputs_record(model: ArtClassifier) -> dict[str, Any]:
    """What the outputs mean: ``class_names`` and ``output``, or for a multi-task export
    ``tasks`` (task -> class names) and ``outputs`` (one per task, in the file's order)."""
    note = "logits; softmax over the last axis gives probabilities"
    if model.task_names is None:
        return {
            "class_names": model.class_names,
            "output": {
                "name": OUTPUT_NAME,
                "shape": ["batch", len(model.class_names)],
                "note": note,
            },
        }
    tasks = model.task_classes
    return {
        "tasks": tasks,
        "outputs": [
            {"name": t, "index": i, "shape": ["batch", len(names)], "note": f"{t} {note}"}
            for i, (t, names) in enumerate(tasks.items())
        ],
    }


def sidecar_record(
    model: ArtClassifier, fmt: str, path: Path, include_normalization: bool, ckpt: str
) -> dict[str, Any]:
    dc = model.data_config
    _, h, w = dc["input_size"]
    hp = model.hparams
    return {
        "format": fmt,
        "file": path.name,
        "checkpoint": str(ckpt),
        "backbone": hp["backbone"],
        "mode": hp["mode"],
        "input": {
            "name": INPUT_NAME,
            "shape": ["batch", 3, int(h), int(w)],
            "dtype": "uint8" if include_normalization else "float32",
            "layout": "NCHW, RGB",
            "normalized_inside": include_normalization,
        },
        **_outputs_record(model),
        "preprocessing": (
            f"decode to RGB; resize the shorter side to floor({h} / crop_pct) with "
            f"{dc.get('interpolation')} interpolation; crop {h}x{w} "
            f"(crop_mode {dc.get('crop_mode') or 'center'})"
            + (
                "; pass uint8 0..255"
                if include_normalization
                else "; scale to 0..1; subtract mean and divide by std (per channel)"
            )
        ),
        "mean": [float(v) for v in dc["mean"]],
        "std": [float(v) for v in dc["std"]],
        "data_config": dc,
        "versions": {"arttl": arttl.__version__, "torch": torch.__version__},
    }


def export_checkpoint(
    ckpt: str | Path,
    fmt: str,
    out: str | Path,
    include_normalization: bool = False,
    opset: int | None = None,
    verify: bool = True,
    atol: float = 1e-4,
    rtol: float = 1e-3,
) -> ExportResult:
    """Write ``out`` (the model) and ``out`` with ``.json`` (its sidecar); check the outputs.

    The check runs the exported file on a batch of another size than the tracing example
    (so a batch dimension frozen by the exporter is caught too) and compares with the
    checkpoint's own logits (multi-task: every task's output with the task's columns).
    """
    if fmt not in FORMATS:
        raise choice_error("format", fmt, FORMATS)
    out = Path(out)
    if out.suffix == "":
        out = out.with_suffix(SUFFIXES[fmt])
    model = load_classifier(ckpt, "cpu")
    net = InferenceNet(model, include_normalization).eval()
    example = example_input(model, 2, include_normalization)
    if fmt == "torchscript":
        _export_torchscript(net, example, out)
    else:
        _export_onnx(net, example, out, opset, output_names(model))
    diffs = None
    if verify:
        diffs = _verify(model, out, fmt, include_normalization, (atol, rtol))
    diff = None if diffs is None else max(diffs.values())
    record = sidecar_record(model, fmt, out, include_normalization, str(ckpt))
    record["max_abs_diff"] = diff
    task_diffs = diffs if diffs is not None and model.task_names is not None else None
    if task_diffs is not None:
        record["max_abs_diff_per_task"] = task_diffs
    sidecar = write_json_atomic(out.with_suffix(out.suffix + ".json"), record)
    return ExportResult(out, sidecar, diff, task_diffs)


def _verify(
    model: ArtClassifier,
    out: Path,
    fmt: str,
    include_normalization: bool,
    tolerance: tuple[float, float],
) -> dict[str, float] | None:
    """Run the exported file on a batch of 3 and compare each output with the checkpoint's own
    (logits, or each task's columns): the largest |difference| per output; None when the
    runtime is not installed. A difference beyond ``tolerance`` (atol, rtol) removes the file
    and raises ExportMismatch."""
    atol, rtol = tolerance
    x = example_input(model, 3, include_normalization)
    names = output_names(model)
    multi = model.task_names is not None  # one-task: the 3-argument call it always was
    got = run_exported(out, fmt, x, names) if multi else run_exported(out, fmt, x)
    if got is None:
        return None
    got = [got] if isinstance(got, torch.Tensor) else list(got)
    ref = _reference(model, x)
    diffs, bad = {}, []
    for i, (name, r) in enumerate(zip(names, ref, strict=True)):
        g = got[i] if i < len(got) else None
        same_shape = g is not None and g.shape == r.shape
        diffs[name] = float((g - r).abs().max()) if same_shape else math.inf  # type: ignore[operator]
        if not same_shape or not torch.allclose(g, r, atol=atol, rtol=rtol):
            bad.append(name)
    if bad or len(got) != len(ref):
        out.unlink(missing_ok=True)
        where = f" (outputs {', '.join(bad)})" if model.task_names is not None else ""
        raise ExportMismatch(
            f"the exported {fmt} model differs from the checkpoint by up to "
            f"{max(diffs.values()):.3g}{where} (atol={atol}, rtol={rtol}); it was removed. Try "
            "the other format, or raise atol= if this is expected float noise."
        )
    return diffs
