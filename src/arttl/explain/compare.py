"""Saliency maps of several models on the same images, and how much they agree.

The paper's claim is that fine-tuning on art changes *where* a network looks. ``compare_models``
explains every image with every model, puts the maps on one grid (``explain.alignment``) and
keeps what the agreement numbers (``explain.agreement``) and the figure (``explain.figure``)
are computed from.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from arttl.errors import ConfigError
from arttl.explain.agreement import agreement_table, auc, deletion_curve, random_deletion_curve
from arttl.explain.alignment import Grid, decode_side, shared_grid, to_common_grid
from arttl.explain.inputs import ImageInput, as_inputs, input_name, load_input
from arttl.explain.methods import check_method, explain, resolve_layer
from arttl.explain.models import ExplainedModel

__all__ = ["CompareOptions", "Comparison", "ImageResult", "ModelResult", "compare_models"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CompareOptions:
    """How to compare. ``target``: None for each model's top-1 class, or a class index/name.
    ``deletion_steps=0`` skips the faithfulness check (it costs (1 + deletion_random) *
    (steps + 1) forward passes per map). ``max_images``: the first ones of a folder or list."""

    method: str = "visual_backprop"
    target: int | str | None = None
    top_fraction: float = 0.1
    deletion_steps: int = 10
    deletion_random: int = 3
    method_options: Mapping[str, Any] = field(default_factory=dict)
    max_images: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        # a private copy (None = no options), so a caller's dict changed later changes nothing
        object.__setattr__(self, "method_options", dict(self.method_options or {}))

    def check(self, models: Sequence[ExplainedModel]) -> list[int | None]:
        """Refuse what cannot work before any image is processed; the target index per model."""
        if not models:
            raise ConfigError("models is empty; give at least one model.")
        check_method(self.method, dict(self.method_options))
        if not 0 < self.top_fraction <= 1:
            raise ConfigError(f"top_fraction={self.top_fraction} must be in (0, 1].")
        if self.deletion_steps < 0:
            raise ConfigError(
                f"deletion_steps={self.deletion_steps} must be >= 0 (0 skips the check)."
            )
        targets = [m.resolve_target(self.target) for m in models]
        if self.method == "gradcam":  # a missing layer fails here, not at the first image
            for m in models:
                resolve_layer(m.module, self.method_options.get("layer"))
        return targets


# -- results -----------------------------------------------------------------------------------
@dataclass
class ModelResult:
    """One model on one image: its prediction, its map (shared grid and own grid), faithfulness."""

    model: str
    target: int
    label: str
    probability: float
    map: np.ndarray
    native_map: np.ndarray
    deletion: np.ndarray | None = None
    random_deletion: np.ndarray | None = None
    task: str | None = None  # the task explained (a multi-task checkpoint's head), if any

    @property
    def deletion_auc(self) -> float:
        return auc(self.deletion) if self.deletion is not None else float("nan")

    @property
    def random_auc(self) -> float:
        return auc(self.random_deletion) if self.random_deletion is not None else float("nan")


@dataclass
class ImageResult:
    name: str
    path: str
    image: np.ndarray  # (H, W, 3) uint8 on the shared grid
    results: list[ModelResult]


@dataclass
class Comparison:
    """Everything ``compare_models`` computed: figures, CSV and .npz are written from this."""

    method: str
    model_names: list[str]
    images: list[ImageResult]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    top_fraction: float = 0.1
    deletion_steps: int = 10
    notes: list[str] = field(default_factory=list)
    target: int | str | None = None  # what was asked for; None = each model's top-1 class
    tasks: list[str | None] = field(default_factory=list)  # per model: its task explained, if any

    @property
    def agreement(self) -> pd.DataFrame:
        return agreement_table(self)


# -- running it ----------------------------------------------------------------------------------
def _explain_with(
    model: ExplainedModel, target: int | None, image: Image.Image, grid: Grid, opts: CompareOptions
) -> tuple[ModelResult, np.ndarray]:
    """One model's map of ``image`` on the shared grid, its faithfulness curves, and the uint8
    (H, W, 3) view of the image this model saw."""
    pixels, x = model.preprocess(image)
    e = explain(model.module, x, opts.method, target=target, **dict(opts.method_options))
    result = ModelResult(
        model=model.name,
        target=e.target,
        label=model.label(e.target),
        probability=e.probability,
        map=to_common_grid(e.map, grid.size, grid.crop_fraction(model), grid.shared_fraction),
        native_map=e.map,
        task=model.task,
    )
    if opts.deletion_steps:
        steps, seed = opts.deletion_steps, opts.seed
        result.deletion = deletion_curve(model.module, x, e.map, e.target, steps, seed=seed)
        result.random_deletion = random_deletion_curve(
            model.module, x, e.target, steps, opts.deletion_random, seed=seed
        )
    return result, pixels.permute(1, 2, 0).numpy()


def compare_models(
    models: Sequence[ExplainedModel],
    images: ImageInput | Sequence[ImageInput],
    options: CompareOptions | None = None,
    progress: Callable[[str], None] | None = None,
    **overrides: Any,
) -> Comparison:
    """Explain every image with every model; undecodable images are listed in ``skipped``.

    ``images``: paths, a folder, PIL images or (name, PIL image) pairs. ``options`` (or its
    fields as keywords, e.g. ``method="gradcam"``): see ``CompareOptions``. ``progress``
    receives one line per image (default: the log).
    """
    opts = dataclasses.replace(options or CompareOptions(), **overrides)
    models = list(models)
    targets = opts.check(models)
    items = as_inputs(images, opts.max_images)
    grid, side = shared_grid(models), decode_side(models)
    comparison = Comparison(
        method=opts.method,
        model_names=[m.name for m in models],
        images=[],
        top_fraction=opts.top_fraction,
        deletion_steps=opts.deletion_steps,
        notes=list(grid.notes),
        target=None if all(t is None for t in targets) else opts.target,
        tasks=[m.task for m in models],
    )
    say = progress or log.info
    for index, item in enumerate(items):
        try:
            name, path, img = load_input(item, index, side)
        except Exception as err:  # ImageRejected, or a PIL object that will not convert
            reason = getattr(err, "reason", None) or f"{type(err).__name__}: {err}"
            comparison.skipped.append((input_name(item, index), reason))
            (progress or log.warning)(f"skipped image {input_name(item, index)}: {reason}")
            continue
        pairs = zip(models, targets, strict=True)
        explained = [_explain_with(m, t, img, grid, opts) for m, t in pairs]
        view = explained[grid.shown][1]
        display = np.clip(to_common_grid(view, grid.size), 0, 255).round().astype(np.uint8)
        comparison.images.append(ImageResult(name, path, display, [r for r, _ in explained]))
        say(f"explained {name} with {len(models)} model(s)")
    return comparison
