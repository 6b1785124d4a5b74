"""Networks to compare, each with its own preprocessing and class names.

A model spec is one string, so a list of them fits a command line:

- ``imagenet`` — the ImageNet network θ of the default backbone (``backbone=`` in the config,
  else the backbone of the first checkpoint in the list: ``[imagenet, run.ckpt]`` is θ vs θ̂);
- ``imagenet:<timm name>`` — the ImageNet network of that timm architecture;
- ``/path/run.ckpt`` — an arttl checkpoint (``arttl.train``), the art-tuned network θ̂;
- ``/path/weights.safetensors`` (``.pth``, ``.pt``, ``.bin``) or ``<timm name>:/path/weights...``
  — ImageNet-classifier weights from a file, e.g. downloaded on another machine.

ImageNet weights come from the local Hugging Face cache only; arttl never downloads.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import timm
import torch
from PIL import Image
from timm.data import ImageNetInfo, infer_imagenet_subset
from torch import nn

from arttl.data.transforms import build_transform
from arttl.errors import ConfigError, choice_error
from arttl.models.backbone import (
    CHECKPOINT_SUFFIXES,
    WEIGHT_FILE_SUFFIXES,
    cached_imagenet_file,
    check_backbone_name,
)

__all__ = ["IMAGENET", "ExplainedModel", "load_model", "load_models", "resolve_device"]

IMAGENET = "imagenet"


@dataclass
class ExplainedModel:
    """A network ready for saliency: ``module`` maps normalised float images to logits."""

    name: str
    module: nn.Module
    data_config: dict[str, Any]
    class_names: list[str]
    spec: str
    backbone: str
    _transform: Callable | None = field(default=None, repr=False)

    @classmethod
    def from_classifier(
        cls, model: nn.Module, name: str | None = None, spec: str = "<in memory>"
    ) -> ExplainedModel:
        """Wrap an ``ArtClassifier`` already in memory (e.g. right after training)."""
        hparams = model.hparams
        return cls(
            name=name or f"{hparams['backbone']}-{hparams['mode']}",
            module=model.eval(),
            data_config=dict(hparams["data_config"]),
            class_names=list(hparams["class_names"]),
            spec=spec,
            backbone=str(hparams["backbone"]),
        )

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    @property
    def input_size(self) -> tuple[int, int]:
        _, h, w = self.data_config["input_size"]
        return int(h), int(w)

    @property
    def transform(self) -> Callable[[Image.Image], torch.Tensor]:
        """timm's eval transform for this model: PIL image -> uint8 (3, H, W) tensor."""
        if self._transform is None:
            self._transform = build_transform(self.data_config, training=False)
        return self._transform

    @property
    def crop_fraction(self) -> float | None:
        """Side of the centre square the eval transform keeps, as a fraction of the image's
        shorter side; None when the transform is not a square centre crop.

        Models with different ``crop_pct`` see nested centre squares of the same image; this
        is what lets ``compare_models`` put their maps on one grid.
        """
        h, w = self.input_size
        mode = self.data_config.get("crop_mode") or "center"
        if h != w or mode != "center":
            return None
        crop_pct = self.data_config.get("crop_pct") or timm.data.DEFAULT_CROP_PCT
        return h / math.floor(h / crop_pct)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (0..255) images, (3, H, W) or (B, 3, H, W) -> the network's float input."""
        x = x.unsqueeze(0) if x.ndim == 3 else x
        mean = torch.tensor(self.data_config["mean"], device=x.device).view(1, 3, 1, 1) * 255.0
        std = torch.tensor(self.data_config["std"], device=x.device).view(1, 3, 1, 1) * 255.0
        return (x.float() - mean) / std

    def preprocess(self, image: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        """(uint8 (3, H, W) view the model sees, normalised (1, 3, H, W) input on its device)."""
        pixels = self.transform(image)
        return pixels, self.normalize(pixels.to(self.device))

    def label(self, index: int) -> str:
        """Short class name for titles (ImageNet descriptions keep their first synonym)."""
        return self.class_names[index].split(",")[0].strip()

    def resolve_target(self, target: int | str | None) -> int | None:
        """A class index from an index or a class name (``None`` = the model's top-1)."""
        if target is None or (isinstance(target, str) and target.strip().lower() in ("", "null")):
            return None
        if isinstance(target, int) or str(target).lstrip("-").isdigit():
            index = int(target)
            if not 0 <= index < len(self.class_names):
                raise ConfigError(
                    f"target={target}: model {self.name!r} has {len(self.class_names)} classes "
                    f"(0..{len(self.class_names) - 1})."
                )
            return index
        names = [self.label(i) for i in range(len(self.class_names))]
        for i, (full, short) in enumerate(zip(self.class_names, names, strict=True)):
            if str(target) in (full, short):
                return i
        raise choice_error(f"target (model {self.name})", target, names[:50])


def resolve_device(device: str | None) -> torch.device:
    """``auto``/None -> CUDA when available, else CPU."""
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise ConfigError(
            f"device={device!r} is not valid; use auto, cpu or cuda ({err})."
        ) from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r}: CUDA is not available here; use device=cpu or auto.")
    return resolved


def _imagenet_class_names(model: nn.Module) -> list[str]:
    subset = infer_imagenet_subset(model)
    num_classes = int(getattr(model, "num_classes", 0) or 0)
    if subset is None:
        return [str(i) for i in range(num_classes)]
    return list(ImageNetInfo(subset).label_descriptions())


def _check_arch(spec: str, arch: str) -> None:
    try:
        check_backbone_name(arch)
    except ConfigError as err:
        raise ConfigError(f"models: {spec!r}: {err}") from err


def _timm_with_classifier(backbone: str, weights_file: Path, spec: str) -> nn.Module:
    try:
        return timm.create_model(
            backbone, pretrained=True, pretrained_cfg_overlay={"file": str(weights_file)}
        )
    except RuntimeError as err:
        raise ConfigError(
            f"models: {spec!r}: the weights in {str(weights_file)!r} do not fit {backbone!r} "
            f"with its ImageNet classifier: {str(err)[:300]}"
        ) from err


def _from_timm(
    spec: str, backbone: str, weights_file: Path, device: torch.device, name: str
) -> ExplainedModel:
    module = _timm_with_classifier(backbone, weights_file, spec).to(device).eval()
    return ExplainedModel(
        name=name,
        module=module,
        data_config=dict(timm.data.resolve_model_data_config(module)),
        class_names=_imagenet_class_names(module),
        spec=spec,
        backbone=backbone,
    )


def _split_backbone_prefix(spec: str) -> tuple[str | None, str]:
    """``resnet50:/w.safetensors`` -> (resnet50, /w.safetensors); a drive letter is no prefix."""
    head, sep, tail = spec.partition(":")
    if sep and len(head) > 1 and "/" not in head and "\\" not in head:
        return head, tail
    return None, spec


def load_model(
    spec: str,
    backbone: str | None = None,
    device: str | torch.device | None = "cpu",
    name: str | None = None,
) -> ExplainedModel:
    """Load one model spec (see the module docstring); errors are ``ConfigError`` with a fix."""
    spec = str(spec).strip()
    device = device if isinstance(device, torch.device) else resolve_device(device)
    if spec == IMAGENET or spec.startswith(IMAGENET + ":"):
        arch = spec.partition(":")[2] or backbone
        if not arch:
            raise ConfigError(
                f"models: {spec!r} needs a backbone: write imagenet:<timm name> (e.g. "
                "imagenet:vgg19), set backbone=<name>, or list an arttl checkpoint whose "
                "backbone it should take."
            )
        _check_arch(spec, arch)
        cached = cached_imagenet_file(arch)
        if cached is None:
            raise ConfigError(
                f"models: {spec!r}: no ImageNet weights for {arch!r} in the Hugging Face cache "
                "(arttl never downloads at run time). Either run once with network access: "
                f"`python -c \"import timm; timm.create_model('{arch}', pretrained=True)\"`, or "
                f"download the weights file and list it as {arch}:/path/to/model.safetensors."
            )
        return _from_timm(spec, arch, cached, device, name or f"imagenet:{arch}")

    prefix, path_str = _split_backbone_prefix(spec)
    path = Path(path_str).expanduser()
    if path_str.endswith(CHECKPOINT_SUFFIXES):
        from arttl.models.classifier import ArtClassifier

        if not path.is_file():
            raise ConfigError(f"models: {spec!r}: checkpoint not found.")
        try:
            model = ArtClassifier.from_checkpoint(path, map_location=str(device)).to(device)
        except ConfigError:
            raise
        except Exception as err:  # truncated or foreign files fail deep inside torch.load
            raise ConfigError(
                f"models: {spec!r} is not a readable arttl checkpoint ({type(err).__name__}: "
                f"{str(err)[:200]})."
            ) from err
        return ExplainedModel.from_classifier(model, name=name or path.stem, spec=spec)
    if path_str.endswith(WEIGHT_FILE_SUFFIXES):
        arch = prefix or backbone
        if not path.is_file():
            raise ConfigError(f"models: {spec!r}: weights file not found.")
        if not arch:
            raise ConfigError(
                f"models: {spec!r}: say which architecture the weights are for: "
                f"<timm name>:{path_str} or backbone=<name>."
            )
        _check_arch(spec, arch)
        return _from_timm(spec, arch, path, device, name or f"{arch}:{path.stem}")
    hint = " (no such file)" if not path.exists() else ""
    raise ConfigError(
        f"models: {spec!r} is not a model spec{hint}; use imagenet, imagenet:<timm name>, an "
        f"arttl checkpoint (.ckpt) or a weights file ({', '.join(WEIGHT_FILE_SUFFIXES)})."
    )


def _unique_names(models: list[ExplainedModel]) -> None:
    """Names key the figure columns, the CSV and the .npz: make repeated ones distinct."""
    names = [m.name for m in models]
    for m in models:
        parent = Path(m.spec).parent.name
        if names.count(m.name) > 1 and not m.spec.startswith(IMAGENET) and parent:
            m.name = f"{parent}/{m.name}"
    names = [m.name for m in models]
    for i, m in enumerate(models):
        if names.count(m.name) > 1:
            m.name = f"{m.name}#{i + 1}"


def load_models(
    specs: Sequence[str] | str,
    backbone: str | None = None,
    device: str | torch.device | None = "cpu",
) -> list[ExplainedModel]:
    """Load every spec; ``imagenet`` without a backbone takes the first checkpoint's backbone.

    All specs are checked (files exist, names parse) before any network is built, so a typo
    in the third spec does not cost the time of loading the first two.
    """
    if isinstance(specs, str):
        specs = [specs]
    specs = [str(s).strip() for s in specs]
    if not specs:
        raise ConfigError("models=[] is empty; list at least one, e.g. models=[imagenet,run.ckpt].")
    for spec in specs:
        if spec.startswith(IMAGENET):
            continue
        _, path_str = _split_backbone_prefix(spec)
        if (
            path_str.endswith(CHECKPOINT_SUFFIXES + WEIGHT_FILE_SUFFIXES)
            and not Path(path_str).expanduser().is_file()
        ):
            kind = "checkpoint" if path_str.endswith(CHECKPOINT_SUFFIXES) else "weights file"
            raise ConfigError(f"models: {spec!r}: {kind} not found.")
    # Files first, so a bare ``imagenet`` can take the backbone of the first checkpoint.
    loaded: dict[int, ExplainedModel] = {}
    for i, spec in enumerate(specs):
        if not spec.startswith(IMAGENET):
            loaded[i] = load_model(spec, backbone=backbone, device=device)
    if backbone is None:
        backbone = next(
            (loaded[i].backbone for i in sorted(loaded) if specs[i].endswith(CHECKPOINT_SUFFIXES)),
            None,
        )
    for i, spec in enumerate(specs):
        if spec.startswith(IMAGENET):
            loaded[i] = load_model(spec, backbone=backbone, device=device)
    models = [loaded[i] for i in range(len(specs))]
    _unique_names(models)
    return models
