"""Image transforms from the backbone's timm data config, ending in uint8 tensors (normalised on device)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import timm.data


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
