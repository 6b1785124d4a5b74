"""Where and how a checkpoint runs at inference: one device rule, one batched loop.

``predict_batches`` is the only loop that feeds image batches to a model outside training:
``evaluate`` (logits), ``predict`` (probabilities) and the off-the-shelf feature cache
(backbone features) all go through it, and it runs ``ArtClassifier.predict_step``. It is a
plain loop rather than ``Trainer.predict``: a Trainer would pick its own device and precision
(evaluate must report fp32 numbers on the device asked for) and keep every batch's output
until the end, where predict must also carry its rejected files along.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from rich.progress import track

from arttl.cli import output_console
from arttl.errors import ConfigError
from arttl.models.classifier import batch_images

if TYPE_CHECKING:
    from arttl.models.classifier import ArtClassifier

STDERR = output_console(stderr=True)  # progress on stderr: stdout stays for the results


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``auto`` (or None / "") = the GPU when there is one; a device that cannot work here is a
    ConfigError naming the valid values, not a CUDA error deep inside torch."""
    if isinstance(device, torch.device):
        return device
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise ConfigError(f"device={device!r} is not valid; use auto, cpu or cuda[:N].") from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r}: CUDA is not available here; use device=cpu or auto.")
    return resolved


@torch.inference_mode()
def predict_batches(
    model: ArtClassifier,
    loader: Iterable[Any],
    output: str = "logits",
    description: str = "predicting",
    bf16: bool = False,
) -> Iterator[tuple[Any, torch.Tensor | None]]:
    """Yield ``(batch, output)`` for every batch of ``loader``, in order.

    ``output`` is what ``model.predict_step`` returns for the batch's images ("logits",
    "probs" or "features"), float32 on the CPU; None for a batch without images (predict's
    batches of unreadable files). The model runs in eval mode on its own device, without
    autograd; ``bf16`` autocasts on CUDA (the frozen backbone of the feature cache).
    """
    device = model.device
    autocast = torch.autocast(
        device.type, dtype=torch.bfloat16, enabled=bf16 and device.type == "cuda"
    )
    was_training = model.training
    model.eval()
    try:
        for index, batch in enumerate(track(loader, description, transient=True, console=STDERR)):
            x = batch_images(batch)
            if x is None:
                yield batch, None
                continue
            with autocast:
                out = model.predict_step(x.to(device, non_blocking=True), index, output=output)
            yield batch, out.float().cpu()
    finally:
        model.train(was_training)


def top_k_table(probs: torch.Tensor, class_names: Sequence[str], k: int) -> pd.DataFrame:
    """label_1, prob_1, ..., label_k, prob_k per row of ``probs``: the ranked labels that
    evaluate's and predict's files list (``k`` capped at the number of classes)."""
    k = min(int(k), probs.shape[1])
    top_p, top_i = probs.topk(k, dim=1)
    names = np.array(class_names, dtype=object)
    columns: dict[str, Any] = {}
    for r in range(k):
        columns[f"label_{r + 1}"] = names[top_i[:, r].numpy()]
        columns[f"prob_{r + 1}"] = top_p[:, r].numpy()
    return pd.DataFrame(columns, index=range(len(probs)))
