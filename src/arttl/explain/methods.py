"""Attribution methods chosen by name: Captum's, plus VisualBackProp (the paper's method).

Every method takes a network that maps normalised float images to logits and returns one
2-D map of the input's size, higher = more important for the target class. Layer-based
methods (GradCAM, VisualBackProp) find their layers from timm's ``feature_info`` on whatever
submodule carries it (the timm model itself, or ``ArtClassifier.backbone``), so no
architecture needs its own code path.

Three traps of attribution on trained networks are handled once, in ``attribution_mode``:
BatchNorm/Dropout in training mode (maps would depend on the batch), in-place activations
(they break the backward hooks Captum installs), and gradients reaching the weights (a
later ``optimizer.step`` would apply them). The model's flags are restored afterwards.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from captum.attr import (
    GuidedBackprop,
    IntegratedGradients,
    LayerGradCam,
    NoiseTunnel,
    Occlusion,
    Saliency,
)
from torch import nn

from arttl.errors import ConfigError, choice_error

__all__ = [
    "METHODS",
    "Explanation",
    "FeatureStage",
    "attribution_mode",
    "check_method",
    "explain",
    "feature_stages",
    "method_names",
    "resolve_layer",
]


@dataclass(frozen=True)
class Explanation:
    """One saliency map: ``map`` is (H, W) float32 on the input's grid, higher = more salient."""

    map: np.ndarray
    target: int
    probability: float
    method: str


@dataclass(frozen=True)
class FeatureStage:
    """A stage of the backbone named by timm's feature_info, as a module path in the model."""

    name: str
    module: nn.Module
    num_chs: int | None
    reduction: int | None


log = logging.getLogger(__name__)

# A method gets the model (already in attribution mode), the (1, 3, H, W) input, the target
# index and its options, and returns a (H, W) tensor.
MethodFn = Callable[..., torch.Tensor]
METHODS: dict[str, MethodFn] = {}


def _register(name: str) -> Callable[[MethodFn], MethodFn]:
    def deco(fn: MethodFn) -> MethodFn:
        METHODS[name] = fn
        return fn

    return deco


def method_names() -> tuple[str, ...]:
    return tuple(METHODS)


def check_method(name: str, options: dict[str, Any] | None = None) -> str:
    """Fail before any work on an unknown method or an option the method does not take."""
    if name not in METHODS:
        raise choice_error("method", name, METHODS)
    accepted = _option_names(name)
    for key in options or {}:
        if key not in accepted:
            raise choice_error(
                f"method_options.{key} (for method={name})",
                key,
                accepted or ["<none>"],
                hint="Leave method_options empty for the defaults.",
            )
    return name


def _option_names(name: str) -> list[str]:
    params = inspect.signature(METHODS[name]).parameters
    return [p for p in params if params[p].kind is inspect.Parameter.KEYWORD_ONLY]


# -- model preparation -------------------------------------------------------------------------
@contextlib.contextmanager
def attribution_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode, frozen weights and out-of-place activations for the block; all restored after.

    Done in place rather than on a copy (a copy of the model is the simpler alternative) so a
    VGG19 (140 M parameters) is not duplicated per call; ``finally`` restores every flag even
    when an attribution fails. Generic over any module with a boolean ``inplace`` attribute
    (nn.ReLU, nn.SiLU, Dropout, timm's activations), so no architecture is special-cased.
    """
    training = [(m, m.training) for m in model.modules()]
    requires_grad = [(p, p.requires_grad) for p in model.parameters()]
    inplace = [m for m in model.modules() if getattr(m, "inplace", None) is True]
    model.eval()
    for p, _ in requires_grad:
        p.requires_grad_(False)
    for m in inplace:
        m.inplace = False
    try:
        yield model
    finally:
        for m in inplace:
            m.inplace = True
        for p, flag in requires_grad:
            p.requires_grad_(flag)
        for m, flag in training:
            m.training = flag


# -- feature stages ----------------------------------------------------------------------------
def _feature_holder(model: nn.Module) -> tuple[str, nn.Module] | None:
    """The first submodule (the model itself included) that carries timm's ``feature_info``."""
    for prefix, module in model.named_modules():
        if getattr(module, "feature_info", None):
            return prefix, module
    return None


def feature_stages(model: nn.Module) -> list[FeatureStage]:
    """Backbone stages from shallow to deep, from timm's ``feature_info`` (no per-model code)."""
    found = _feature_holder(model)
    if found is None:
        raise ConfigError(
            f"{type(model).__name__} has no timm feature_info, which gradcam and visual_backprop "
            "use to find the backbone's stages; use a timm backbone, pass "
            "method_options.layer=<module name> for gradcam, or use a gradient method "
            "(saliency, integrated_gradients, guided_backprop, smoothgrad) or occlusion."
        )
    prefix, holder = found
    info = holder.feature_info
    dicts = info.get_dicts() if hasattr(info, "get_dicts") else list(info)
    stages = []
    for d in dicts:
        name = f"{prefix}.{d['module']}" if prefix else str(d["module"])
        try:
            module = model.get_submodule(name)
        except AttributeError as err:
            raise ConfigError(
                f"feature_info of {type(holder).__name__} names module {d['module']!r}, which "
                f"the model does not have ({err})."
            ) from err
        stages.append(FeatureStage(name, module, d.get("num_chs"), d.get("reduction")))
    return stages


def resolve_layer(model: nn.Module, layer: str | None = None) -> FeatureStage:
    """The GradCAM layer: ``layer`` by module path (full or relative to the backbone), else the
    deepest feature stage."""
    if layer is None:
        return feature_stages(model)[-1]
    found = _feature_holder(model)
    candidates = [layer]
    if found is not None and found[0]:
        candidates.append(f"{found[0]}.{layer}")
    for name in candidates:
        with contextlib.suppress(AttributeError):
            return FeatureStage(name, model.get_submodule(name), None, None)
    try:
        known = [s.name for s in feature_stages(model)]
    except ConfigError:
        known = [n for n, _ in model.named_modules() if n][:40]
    raise choice_error(
        "method_options.layer",
        layer,
        known,
        hint="Give a module path of the model (see model.named_modules()); these are its stages.",
    )


def _capture(stages: list[FeatureStage]) -> tuple[dict[str, torch.Tensor], list[Any]]:
    outputs: dict[str, torch.Tensor] = {}

    def hook(name: str) -> Callable[..., None]:
        def fn(module: nn.Module, inputs: Any, output: Any) -> None:
            outputs[name] = output[0] if isinstance(output, list | tuple) else output

        return fn

    handles = [s.module.register_forward_hook(hook(s.name)) for s in stages]
    return outputs, handles


def _spatial(output: torch.Tensor, stage: FeatureStage, method: str) -> torch.Tensor:
    """A stage output as (B, C, h, w); a clear error for token sequences (ViTs) and NHWC."""
    ok = output.ndim == 4 and (stage.num_chs is None or output.shape[1] == stage.num_chs)
    if not ok:
        raise ConfigError(
            f"method={method} needs a convolutional feature map (B, C, H, W) but layer "
            f"{stage.name!r} outputs shape {tuple(output.shape)} (a transformer's tokens or a "
            "channels-last map). For this backbone use saliency, integrated_gradients, "
            "guided_backprop, smoothgrad or occlusion."
        )
    return output


# -- the methods -------------------------------------------------------------------------------
def _pixel_map(attr: torch.Tensor) -> torch.Tensor:
    """Per-pixel importance from per-channel attributions: |a| summed over colour channels."""
    return attr[0].abs().sum(dim=0)


@_register("saliency")
def _saliency(model: nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
    return _pixel_map(Saliency(model).attribute(x, target=target, abs=True))


@_register("integrated_gradients")
def _integrated_gradients(
    model: nn.Module,
    x: torch.Tensor,
    target: int,
    *,
    n_steps: int = 32,
    internal_batch_size: int = 16,
) -> torch.Tensor:
    # Baseline 0 in normalised space is the dataset's mean colour.
    ig = IntegratedGradients(model)
    attr = ig.attribute(
        x, baselines=0.0, target=target, n_steps=n_steps, internal_batch_size=internal_batch_size
    )
    return _pixel_map(attr)


@_register("guided_backprop")
def _guided_backprop(model: nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
    with warnings.catch_warnings():
        # Captum announces the ReLU hooks it installs (and removes) on every call.
        warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
        return _pixel_map(GuidedBackprop(model).attribute(x, target=target))


@_register("smoothgrad")
def _smoothgrad(
    model: nn.Module,
    x: torch.Tensor,
    target: int,
    *,
    nt_samples: int = 16,
    stdev: float = 0.15,
    batch_size: int = 8,
    seed: int = 0,
) -> torch.Tensor:
    # stdev is relative to the input's value range, as in Smilkov et al. 2017.
    sigma = stdev * float(x.detach().max() - x.detach().min())
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        torch.manual_seed(seed)
        attr = NoiseTunnel(Saliency(model)).attribute(
            x,
            nt_type="smoothgrad",
            nt_samples=nt_samples,
            nt_samples_batch_size=batch_size,
            stdevs=sigma,
            target=target,
            abs=True,
        )
    return _pixel_map(attr)


@_register("gradcam")
def _gradcam(
    model: nn.Module, x: torch.Tensor, target: int, *, layer: str | None = None
) -> torch.Tensor:
    stage = resolve_layer(model, layer)
    outputs, handles = _capture([stage])
    try:
        attr = LayerGradCam(model, stage.module).attribute(x, target=target, relu_attributions=True)
    finally:
        for h in handles:
            h.remove()
    _spatial(outputs[stage.name], stage, "gradcam")
    if not bool((attr > 0).any()):
        log.warning(
            "gradcam: no positive evidence for class %d in layer %r, so the map is all zero "
            "(common for untrained networks; try target=, another layer, or another method).",
            target,
            stage.name,
        )
    up = F.interpolate(attr.detach(), size=x.shape[-2:], mode="bilinear", align_corners=False)
    return up[0, 0]


@_register("occlusion")
def _occlusion(
    model: nn.Module,
    x: torch.Tensor,
    target: int,
    *,
    window: int | None = None,
    stride: int | None = None,
    batch_size: int = 16,
) -> torch.Tensor:
    # Signed: positive where hiding the patch (with the mean colour) lowers the class score.
    h, w = x.shape[-2:]
    window = window or max(1, math.ceil(min(h, w) / 8))
    stride = stride or max(1, window // 2)
    attr = Occlusion(model).attribute(
        x,
        sliding_window_shapes=(x.shape[1], window, window),
        strides=(x.shape[1], stride, stride),
        baselines=0.0,
        target=target,
        perturbations_per_eval=batch_size,
    )
    return attr[0].mean(dim=0)


def _minmax(a: torch.Tensor) -> torch.Tensor:
    lo, hi = a.amin(dim=(-2, -1), keepdim=True), a.amax(dim=(-2, -1), keepdim=True)
    span = hi - lo
    # A flat map carries no "where": it becomes a neutral factor of 1, not a zero that wipes out
    # every other stage (happens when a deep stage is 1x1 on small inputs).
    return torch.where(span > 1e-12, (a - lo) / span.clamp_min(1e-12), torch.ones_like(a))


@_register("visual_backprop")
def _visual_backprop(model: nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
    # Captum lacks VisualBackProp (Bojarski et al. 2016), the method the paper used.
    # Channel-averaged, min-max normalised stage outputs, multiplied from the deepest stage
    # to the shallowest, each product upsampled to the next shallower stage's grid. Depends on
    # the forward pass only, so ``target`` is unused (the map is class-agnostic by design).
    stages = feature_stages(model)
    outputs, handles = _capture(stages)
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    means = [
        _minmax(_spatial(outputs[s.name], s, "visual_backprop").float().mean(1, keepdim=True))
        for s in stages
    ]
    mask = means[-1]
    for avg in reversed(means[:-1]):
        mask = F.interpolate(mask, size=avg.shape[-2:], mode="bilinear", align_corners=False) * avg
    mask = F.interpolate(mask, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return mask[0, 0]


# -- entry point -------------------------------------------------------------------------------
def explain(
    model: nn.Module,
    x: torch.Tensor,
    method: str = "visual_backprop",
    target: int | None = None,
    **options: Any,
) -> Explanation:
    """Saliency map of ``x`` (one normalised image, (3, H, W) or (1, 3, H, W)) for ``target``.

    ``target=None`` explains the model's top-1 class. ``options`` go to the method (e.g.
    ``n_steps`` for integrated_gradients, ``layer`` for gradcam, ``window`` for occlusion).
    The model's weights, ``.grad`` and training flags are the same before and after.
    """
    check_method(method, options)
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"explain takes one image (3, H, W) or (1, 3, H, W); got {tuple(x.shape)}")
    with attribution_mode(model):
        device = next((p.device for p in model.parameters()), x.device)
        x = x.detach().to(device=device, dtype=torch.float32)
        with torch.no_grad():
            probs = model(x).float().softmax(dim=-1)[0]
        if target is None:
            target = int(probs.argmax())
        elif not 0 <= int(target) < probs.numel():
            raise ConfigError(
                f"target={target} is out of range for a model with {probs.numel()} classes."
            )
        target = int(target)
        result = METHODS[method](model, x.clone().requires_grad_(True), target, **options)
    out = result.detach().float().cpu().numpy().astype(np.float32)
    if out.shape != tuple(x.shape[-2:]):
        raise RuntimeError(f"{method} returned a {out.shape} map for a {tuple(x.shape[-2:])} image")
    return Explanation(
        map=np.nan_to_num(out), target=target, probability=float(probs[target]), method=method
    )
