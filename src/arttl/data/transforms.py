"""Image transforms from the backbone's timm data config, ending in uint8 tensors (normalised on device)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import timm.data
import torch


def build_transform(
    data_config: dict[str, Any],
    training: bool = False,
    scale: Sequence[float] = (0.5, 1.0),
    hflip: float = 0.5,
    color_jitter: float | None = None,
) -> Callable:
    """timm's transform for this backbone; ``use_prefetcher`` keeps uint8 so batches collate small.

    Colour jitter is off by default: colour carries style and material information in art images.
    """
    kwargs: dict[str, Any] = {
        "input_size": tuple(data_config["input_size"]),
        "interpolation": data_config.get("interpolation", "bilinear"),
        "mean": tuple(data_config["mean"]),
        "std": tuple(data_config["std"]),
        "crop_pct": data_config.get("crop_pct"),
        "crop_mode": data_config.get("crop_mode"),
        "use_prefetcher": True,
        "is_training": training,
    }
    if training:
        kwargs.update(scale=tuple(scale), hflip=hflip, color_jitter=color_jitter)
        kwargs.pop("crop_pct")
        kwargs.pop("crop_mode")
    return timm.data.create_transform(**kwargs)


def collate_encoded(
    items: list[tuple[torch.Tensor, int | torch.Tensor]],
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Keep JPEG byte tensors as a list (they differ in length) for one batched GPU decode;
    labels stack to (batch,) or, one entry per task, (batch, tasks)."""
    labels = [torch.as_tensor(y, dtype=torch.int64) for _, y in items]
    return [x for x, _ in items], torch.stack(labels)


class GpuDecode:
    """Batched nvJPEG decode + the timm-equivalent crop on the GPU, yielding a uint8 batch.

    Training: RandomResizedCrop(scale) + horizontal flip; eval: resize to size / crop_pct and
    centre-crop, as timm's eval transform does. The CPU workers then only read bytes.
    """

    def __init__(
        self,
        data_config: dict[str, Any],
        scale: Sequence[float] = (0.5, 1.0),
        hflip: float = 0.5,
    ) -> None:
        from torchvision.transforms import v2

        size = tuple(data_config["input_size"][-2:])
        interp = v2.InterpolationMode(data_config.get("interpolation", "bilinear"))
        crop_pct = data_config.get("crop_pct") or 0.875
        self.train_tf = v2.Compose(
            [
                v2.RandomResizedCrop(size, scale=tuple(scale), interpolation=interp),
                v2.RandomHorizontalFlip(hflip),
            ]
        )
        scale_size = math.floor(size[0] / crop_pct)
        self.eval_tf = v2.Compose(
            [v2.Resize(scale_size, interpolation=interp), v2.CenterCrop(size)]
        )

    def __call__(
        self, encoded: list[torch.Tensor], training: bool, device: torch.device | str = "cuda"
    ) -> torch.Tensor:
        from torchvision.io import ImageReadMode, decode_jpeg

        images = decode_jpeg(
            [x.cpu() for x in encoded], mode=ImageReadMode.RGB, device=torch.device(device)
        )
        tf = self.train_tf if training else self.eval_tf
        return torch.stack([tf(img) for img in images])
