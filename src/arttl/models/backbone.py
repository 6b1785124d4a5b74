"""timm behind one factory: model creation, weight sources and the model's own data config."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from arttl.errors import ConfigError
from arttl.models.weights import (
    is_imagenet,
    local_pretrained_file,
    pretrained_name,
    resolve_pretrained_file,
)

WEIGHT_FILE_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
CHECKPOINT_SUFFIXES = (".ckpt",)


def check_backbone_name(name: str) -> None:
    """Fail before any work, with close matches, when timm does not know ``name``.

    A pretrained tag may follow the architecture (``convnext_tiny.fb_in22k``): it picks those
    weights for ``backbone.weights=imagenet`` and their data config.
    """
    arch, tag = timm.models.split_model_name_tag(str(name))
    names = timm.list_models()
    if arch not in names:
        close = difflib.get_close_matches(arch, names, n=5, cutoff=0.6)
        raise ConfigError(
            f"backbone.name={name!r} is not a timm model"
            + (f"; did you mean {', '.join(close)}?" if close else ".")
            + " Presets: conf/backbone/*.yaml; any name from timm.list_models() works."
        )
    if tag and not timm.models.is_model_pretrained(name):
        tags = [n.partition(".")[2] for n in timm.list_pretrained(f"{arch}.*")]
        raise ConfigError(
            f"backbone.name={name!r}: timm has no pretrained tag {tag!r} for {arch!r}; "
            + (f"choose one of: {', '.join(tags)}." if tags else f"use backbone.name={arch}.")
        )


def _create(name: str, image_size: int | None, **kwargs: Any) -> nn.Module:
    if image_size is not None:
        # Models with a fixed token grid (ViTs) need img_size at construction; CNNs reject it.
        try:
            return timm.create_model(name, num_classes=0, img_size=image_size, **kwargs)
        except TypeError:
            pass
    return timm.create_model(name, num_classes=0, **kwargs)


def cached_imagenet_file(name: str) -> Path | None:
    """The pretrained weights of ``name`` (``<arch>`` or ``<arch>.<tag>``) already on this machine:
    the Hugging Face cache, else a package that ships them (arttl.models.weights). No network;
    None when timm has no pretrained weights for ``name`` or none are here."""
    try:
        return local_pretrained_file(name)
    except ConfigError:
        return None


def load_arttl_backbone_state(ckpt: str | Path, backbone: str) -> dict[str, torch.Tensor]:
    """The backbone tensors of an earlier arttl checkpoint (its head is dropped on purpose)."""
    ckpt = Path(ckpt)
    if not ckpt.is_file():
        raise ConfigError(
            f"backbone.weights={str(ckpt)!r}: checkpoint not found. Train the source experiment first, "
            "e.g. `python -m arttl.train +experiment=rijks_type backbone=<same backbone> "
            "mode=fine_tune`, which writes checkpoints/<experiment>/<backbone>-<mode>.ckpt."
        )
    payload = torch.load(ckpt, map_location="cpu", weights_only=False)
    hparams = payload.get("hyper_parameters", {})
    if "state_dict" not in payload or "backbone" not in hparams:
        raise ConfigError(f"backbone.weights={str(ckpt)!r} is not an arttl checkpoint.")
    if hparams["backbone"] != backbone:
        raise ConfigError(
            f"backbone.weights={str(ckpt)!r} holds a {hparams['backbone']!r} network but "
            f"backbone.name={backbone!r}; use backbone={hparams['backbone']} or another checkpoint."
        )
    prefix = "backbone."
    return {k[len(prefix) :]: v for k, v in payload["state_dict"].items() if k.startswith(prefix)}


def _check_loaded(model: nn.Module, fresh: nn.Module, weights: str, name: str) -> None:
    """timm loads with strict=False once the classifier is dropped (num_classes=0), so a file of
    another architecture would leave the random init in place with only a log line. A parameter
    still equal to the same-seed random init (constant inits such as BatchNorm's excepted) was
    not in the file."""
    init = dict(fresh.named_parameters())
    missing = [
        key
        for key, p in model.named_parameters()
        if torch.equal(p, init[key]) and not bool((init[key] == init[key].flatten()[0]).all())
    ]
    if missing:
        raise ConfigError(
            f"backbone.weights={weights!r} does not fit backbone {name!r}: {len(missing)} "
            f"tensors were not in the file ({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}). "
            "Pass weights saved from the same timm architecture."
        )


def create_backbone(
    name: str, weights: str | None = "none", image_size: int | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """A timm network without classifier (forward -> pooled features) and its data config.

    ``weights``: ``imagenet`` or ``imagenet:<tag>`` (timm's pretrained weights: the Hugging Face
    cache, else downloaded like timm does, else a package that ships them; see
    ``arttl.models.weights``), ``none`` (random init, the paper's "scratch"), a weights file,
    or an arttl ``.ckpt`` (only its backbone tensors are used).
    """
    check_backbone_name(name)
    weights = "none" if weights in (None, "", "none", "None", False) else str(weights)
    if weights == "none":
        model = _create(name, image_size, pretrained=False)
    elif is_imagenet(weights):
        # The tagged name selects the tag's pretrained cfg, so its data config comes along.
        full = pretrained_name(name, weights)
        path = resolve_pretrained_file(name, weights)
        model = _create(
            full, image_size, pretrained=True, pretrained_cfg_overlay={"file": str(path)}
        )
    elif weights.endswith(CHECKPOINT_SUFFIXES):
        model = _create(name, image_size, pretrained=False)
        state = load_arttl_backbone_state(weights, name)
        model.load_state_dict(state, strict=True)
    elif weights.endswith(WEIGHT_FILE_SUFFIXES):
        if not Path(weights).is_file():
            raise ConfigError(f"backbone.weights={weights!r}: file not found.")
        try:
            with torch.random.fork_rng():  # the same random init twice, global RNG untouched
                torch.manual_seed(0)
                fresh = _create(name, image_size, pretrained=False)
                torch.manual_seed(0)
                model = _create(
                    name, image_size, pretrained=True, pretrained_cfg_overlay={"file": weights}
                )
        except RuntimeError as err:
            raise ConfigError(
                f"backbone.weights={weights!r} does not fit backbone {name!r}: {str(err)[:300]}"
            ) from err
        _check_loaded(model, fresh, weights, name)
    else:
        raise ConfigError(
            f"backbone.weights={weights!r} is not valid; use imagenet, imagenet:<timm tag>, none, a "
            f"weights file ({', '.join(WEIGHT_FILE_SUFFIXES)}) or an arttl checkpoint (.ckpt)."
        )
    data_config = dict(timm.data.resolve_model_data_config(model))
    if image_size is not None:
        data_config["input_size"] = (3, int(image_size), int(image_size))
    return model, data_config
