"""timm behind one factory: model creation, weight sources and the model's own data config."""

from __future__ import annotations

import difflib
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from arttl.errors import ConfigError
from arttl.models.weights import CHECKPOINT_SUFFIXES as CHECKPOINT_SUFFIXES
from arttl.models.weights import WEIGHT_FILE_SUFFIXES as WEIGHT_FILE_SUFFIXES
from arttl.models.weights import (
    local_pretrained_file,
    pretrained_name,
    resolve_pretrained_file,
    weights_kind,
)

log = logging.getLogger(__name__)


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
    """The backbone tensors of an earlier arttl checkpoint (θ̂). Its head is dropped on purpose,
    whatever its tasks and classes (one task or several, as many outputs as it had): the new
    run's head(s) keep their fresh initialisation, so a multi-task checkpoint transfers to a
    one-task run and back without a shape to reconcile."""
    ckpt = Path(ckpt)
    weights_kind(ckpt)  # a missing file: "checkpoint not found", and how to make it
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


def _checkpoint_filter(model: nn.Module) -> Callable[..., dict[str, Any]] | None:
    """The architecture's ``checkpoint_filter_fn`` (e.g. ViT position embeddings resampled to
    another image size), which timm's own pretrained loading applies to a weights file too."""
    return getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)


def load_weights_file(model: nn.Module, weights: str, name: str) -> None:
    """Load a weights file into ``model`` with timm's loader, refusing one that lacks tensors.

    The file's classifier is dropped on purpose (num_classes=0), so the load cannot be strict:
    timm reports the missing and unexpected keys instead. A missing tensor would silently keep
    its random init, so it is an error; a surplus one is ignored with a warning.
    """
    try:
        result = timm.models.load_checkpoint(
            model, weights, strict=False, filter_fn=_checkpoint_filter(model)
        )
    except RuntimeError as err:  # a tensor of the right name but another shape
        raise ConfigError(
            f"backbone.weights={weights!r} does not fit backbone {name!r}: {str(err)[:300]}"
        ) from err
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing:
        raise ConfigError(
            f"backbone.weights={weights!r} does not fit backbone {name!r}: {len(missing)} "
            f"tensors were not in the file ({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}). "
            "Pass weights saved from the same timm architecture."
        )
    classifier = model.pretrained_cfg.get("classifier") or ()
    heads = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    unexpected = [k for k in result.unexpected_keys if k.rpartition(".")[0] not in heads]
    if unexpected:
        log.warning(
            f"backbone.weights={weights!r}: {len(unexpected)} tensors of the file are not in "
            f"backbone {name!r} and were ignored ({', '.join(unexpected[:5])}"
            f"{', ...' if len(unexpected) > 5 else ''})."
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
    kind = weights_kind(weights)  # a missing file or an unknown value is a ConfigError
    weights = "none" if kind == "none" else str(weights)
    if kind == "none":
        model = _create(name, image_size, pretrained=False)
    elif kind == "imagenet":
        # The tagged name selects the tag's pretrained cfg, so its data config comes along.
        full = pretrained_name(name, weights)
        path = resolve_pretrained_file(name, weights)
        model = _create(
            full, image_size, pretrained=True, pretrained_cfg_overlay={"file": str(path)}
        )
    elif kind == "checkpoint":
        model = _create(name, image_size, pretrained=False)
        state = load_arttl_backbone_state(weights, name)
        model.load_state_dict(state, strict=True)
    else:  # a weights file
        with torch.random.fork_rng():  # the file replaces the init: the run's RNG stays put
            model = _create(name, image_size, pretrained=False)
        load_weights_file(model, weights, name)
    data_config = dict(timm.data.resolve_model_data_config(model))
    if image_size is not None:
        data_config["input_size"] = (3, int(image_size), int(image_size))
    return model, data_config
