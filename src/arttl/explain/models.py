"""Networks to compare, each with its own preprocessing and class names.

A model spec is one string, so a list of them fits a command line:

- ``imagenet`` — the ImageNet network θ of the default backbone (``backbone=`` in the config,
  else the backbone of the first checkpoint in the list: ``[imagenet, run.ckpt]`` is θ vs θ̂);
- ``imagenet:<timm name>`` — the ImageNet network of that timm architecture;
- ``/path/run.ckpt`` — an arttl checkpoint (``arttl.train``), the art-tuned network θ̂;
- ``/path/weights.safetensors`` (``.pth``, ``.pt``, ``.bin``) or ``<timm name>:/path/weights...``
  — ImageNet-classifier weights from a file, e.g. downloaded on another machine.

ImageNet weights come from the Hugging Face cache, else are downloaded as timm does (or, offline,
from packaged weights where arttl has them).

Each model is named by what it is, so a figure is readable without the command that made it
(``describe_checkpoint``): ``θ ImageNet · vgg19`` (the ImageNet network),
``θ̂ rijks_artist-tuned vgg19 (from ImageNet) · fine_tune`` (θ fine-tuned on an art collection),
``θ ImageNet vgg19 + rijks_artist head (off-the-shelf)`` (θ's features with a new softmax),
``θ̂ rijks_artist-tuned vgg19 · fine_tune on antwerp_artist`` (a run that started from another
arttl checkpoint, i.e. a network already tuned on an art collection) and
``resnet18 from scratch · demo``. Names that would repeat get the part of the checkpoint path
that tells them apart (usually the run folder); ``names=`` overrides them all.

A multi-task checkpoint (one head per task, stacked) is explained for one task (``task=``;
default its first): the network is wrapped so that its outputs are that task's columns of the
logits (``TaskLogits``), so targets, probabilities and deletion curves are the task's own. A
one-task checkpoint's task is its challenge; ``task=`` naming another is an error. ImageNet
networks have no task and ignore ``task=``.
"""

from __future__ import annotations

import math
import zipfile
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
from arttl.inference.runner import resolve_device
from arttl.models.backbone import (
    CHECKPOINT_SUFFIXES,
    WEIGHT_FILE_SUFFIXES,
    check_backbone_name,
)
from arttl.models.classifier import ArtClassifier, normalize_pixels, pixel_scale
from arttl.models.weights import resolve_pretrained_file

__all__ = [
    "IMAGENET",
    "ExplainedModel",
    "TaskLogits",
    "check_names",
    "collection_name",
    "describe_checkpoint",
    "load_model",
    "load_models",
    "select_task",
]

IMAGENET = "imagenet"
THETA = "θ"  # the ImageNet weights, as in the paper
THETA_HAT = "θ̂"  # weights already tuned on an art collection (an arttl checkpoint)
# Dataset readers that hold any collection: their name says nothing, the source folder does.
GENERIC_DATASETS = ("imagefolder", "csv")
NO_WEIGHTS = (None, "", "none", "None")


def collection_name(hparams: dict[str, Any], provenance: dict[str, Any] | None = None) -> str:
    """What a checkpoint was trained on, in a few words ("" when it does not say).

    The experiment preset when one was used; else the dataset (with its challenge when it is
    not the generic ``class``); a generic reader (imagefolder, csv) is named by the last two
    folders of its source root, from the run config in the checkpoint's provenance.
    """
    experiment = hparams.get("experiment")
    if experiment and str(experiment) != "default":
        return str(experiment)
    dataset = str(hparams.get("dataset") or "")
    if not dataset or dataset in GENERIC_DATASETS:
        run_config = (provenance or {}).get("run_config") or {}
        root = (
            (run_config.get("dataset") or {}).get("root") if isinstance(run_config, dict) else None
        )
        if root and str(root) != "???":
            dataset = "/".join(Path(str(root)).parts[-2:])
    challenge = hparams.get("challenge")
    if dataset and challenge and str(challenge) != "class":
        return f"{dataset} ({challenge})"
    return dataset


def _checkpoint_meta(path: Path) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(hyper-parameters, provenance) of an arttl checkpoint, None if it cannot be read."""
    try:
        raw = torch.load(
            path, map_location="cpu", weights_only=False, mmap=zipfile.is_zipfile(path)
        )
    except Exception:  # a foreign or truncated file: the name falls back to the file name
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("hyper_parameters"), dict):
        return None
    return dict(raw["hyper_parameters"]), dict(raw.get("arttl_provenance") or {})


def _source_collection(weights: str) -> str:
    """What the arttl checkpoint a run started from was tuned on: its own experiment/dataset
    if the file is still there, else the stable name's experiment folder
    (``checkpoints/<experiment>/<backbone>-<mode>.ckpt``), else its file name."""
    path = Path(weights).expanduser()
    meta = _checkpoint_meta(path) if path.is_file() else None
    if meta is not None and (name := collection_name(*meta)):
        return name
    if path.parent.parent.name == "checkpoints" and path.parent.name:
        return path.parent.name
    return path.stem


TUNING_MODES = ("fine_tune", "partial", "gradual")  # modes that change the backbone's weights


def describe_checkpoint(hparams: dict[str, Any], provenance: dict[str, Any] | None = None) -> str:
    """A model's name from an arttl checkpoint's hyper-parameters: where its weights started
    (θ ImageNet, θ̂ tuned on another collection, from scratch, a weights file), the backbone,
    the transfer mode, the collection it was trained on and, for a network of a multi-task
    store, the tasks it learnt (``· multi-task: type, material`` or ``· one task: material``)."""
    tasks = list(hparams.get("tasks") or {})
    learnt = ""
    if tasks:
        learnt = (
            f" · multi-task: {', '.join(tasks)}" if len(tasks) > 1 else f" · one task: {tasks[0]}"
        )
    return _describe_weights(hparams, provenance) + learnt


def _describe_weights(hparams: dict[str, Any], provenance: dict[str, Any] | None) -> str:
    backbone = str(hparams.get("backbone") or "?")
    mode = str(hparams.get("mode") or "")
    weights = hparams.get("weights")
    on = collection_name(hparams, provenance)
    if weights in NO_WEIGHTS:
        if mode == "scratch" or not mode:
            return f"{backbone} from scratch" + (f" · {on}" if on else "")
        head = f"{backbone} from random init"
    elif str(weights).partition(":")[0] == IMAGENET:  # imagenet or imagenet:<pretrained tag>
        tag = str(weights).partition(":")[2]
        arch = backbone + (f".{tag}" if tag else "")
        if mode in TUNING_MODES and on:  # θ tuned on an art collection is the paper's θ̂
            return f"{THETA_HAT} {on}-tuned {arch} (from ImageNet) · {mode}"
        head = f"{THETA} ImageNet {arch}"
        if mode == "off_the_shelf" and on:  # θ's features unchanged, a new head
            return f"{head} + {on} head (off-the-shelf)"
    elif str(weights).endswith(CHECKPOINT_SUFFIXES):
        head = f"{THETA_HAT} {_source_collection(str(weights))}-tuned {backbone}"
    else:
        head = f"{backbone} from {Path(str(weights)).name}"
    return f"{head} · {mode} on {on}" if on else f"{head} · {mode}"


class TaskLogits(nn.Module):
    """One task of a multi-task classifier: normalised images -> that task's columns of the
    logits. It holds the classifier's ``backbone`` and ``head`` themselves (no copy), under the
    same names, so layer paths (``backbone.layer3``) and timm's feature_info are found as on
    the classifier."""

    def __init__(self, model: nn.Module, columns: slice) -> None:
        super().__init__()
        self.backbone = model.backbone
        self.head = model.head
        self.start, self.stop = int(columns.start), int(columns.stop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))[:, self.start : self.stop]


def select_task(
    model: Any, task: str | None, spec: str = "<in memory>"
) -> tuple[str | None, nn.Module, list[str]]:
    """(task, network, class names) to explain ``model`` (an ``ArtClassifier``) with: a
    multi-task one's ``task`` (default its first) through ``TaskLogits``; a one-task one as
    it is (``task`` must then be its own task, its challenge)."""
    tasks = getattr(model, "task_names", None)
    if tasks is None:
        own = next(iter(getattr(model, "task_classes", {"label": None})))
        if task is not None and str(task) != own:
            raise ConfigError(
                f"task={task!r}: model {spec!r} is a one-task network for {own!r}; use "
                f"task={own} or task=null (or a multi-task checkpoint that has {task!r})."
            )
        return task, model.eval(), list(model.hparams["class_names"])
    chosen = tasks[0] if task is None else str(task)
    if chosen not in tasks:
        raise ConfigError(
            f"task={chosen!r} is not a task of {spec!r}; its tasks are {', '.join(tasks)} "
            "(task=null: the first)."
        )
    module = TaskLogits(model, model.task_slices[chosen]).eval()
    return chosen, module, list(model.task_classes[chosen])


@dataclass
class ExplainedModel:
    """A network ready for saliency: ``module`` maps normalised float images to logits (of
    ``task`` for a multi-task checkpoint; None: the network's only task, or an ImageNet one)."""

    name: str
    module: nn.Module
    data_config: dict[str, Any]
    class_names: list[str]
    spec: str
    backbone: str
    _transform: Callable | None = field(default=None, repr=False)
    task: str | None = None

    @classmethod
    def from_classifier(
        cls,
        model: nn.Module,
        name: str | None = None,
        spec: str = "<in memory>",
        task: str | None = None,
    ) -> ExplainedModel:
        """Wrap an ``ArtClassifier`` already in memory (e.g. right after training); without
        ``name`` it is named from its hyper-parameters (``describe_checkpoint``). ``task``:
        see ``select_task``."""
        hparams = model.hparams
        provenance = getattr(model, "provenance", None)
        task, module, class_names = select_task(model, task, spec)
        return cls(
            name=name or describe_checkpoint(dict(hparams), provenance),
            module=module,
            data_config=dict(hparams["data_config"]),
            class_names=class_names,
            spec=spec,
            backbone=str(hparams["backbone"]),
            task=task,
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
        """uint8 (0..255) images, (3, H, W) or (B, 3, H, W) -> the network's float input, by the
        classifier's own normalisation (also for ImageNet networks that are no ArtClassifier)."""
        x = x.unsqueeze(0) if x.ndim == 3 else x
        mean, std = pixel_scale(self.data_config)
        return normalize_pixels(x, mean.to(x.device), std.to(x.device))

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
    task: str | None = None,
) -> ExplainedModel:
    """Load one model spec (see the module docstring); errors are ``ConfigError`` with a fix.
    ``task``: the task of an arttl checkpoint to explain (``select_task``); ImageNet networks
    and weight files have none and ignore it."""
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
        # like train: the HF cache, else a download (or packaged weights offline)
        weights_file = resolve_pretrained_file(arch, IMAGENET, key="models")
        return _from_timm(spec, arch, weights_file, device, name or f"{THETA} ImageNet · {arch}")

    prefix, path_str = _split_backbone_prefix(spec)
    path = Path(path_str).expanduser()
    if path_str.endswith(CHECKPOINT_SUFFIXES):
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
        return ExplainedModel.from_classifier(model, name=name, spec=spec, task=task)
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
        return _from_timm(
            spec, arch, path, device, name or f"{THETA} ImageNet · {arch} ({path.name})"
        )
    hint = " (no such file)" if not path.exists() else ""
    raise ConfigError(
        f"models: {spec!r} is not a model spec{hint}; use imagenet, imagenet:<timm name>, an "
        f"arttl checkpoint (.ckpt) or a weights file ({', '.join(WEIGHT_FILE_SUFFIXES)})."
    )


def _path_parts(spec: str) -> tuple[str, ...]:
    _, path_str = _split_backbone_prefix(spec)
    path = Path(path_str).expanduser().resolve()
    return (*path.parent.parts, path.stem)


def _distinguishing(parts: list[tuple[str, ...]]) -> list[str]:
    """What differs between paths: their parts without the common beginning and end
    (``.../<run A>/checkpoints/best`` vs ``.../<run B>/checkpoints/best`` -> run A, run B)."""
    head = 0
    while all(len(p) > head for p in parts) and len({p[head] for p in parts}) == 1:
        head += 1
    tail = 0
    while (
        all(len(p) - head > tail for p in parts) and len({p[len(p) - 1 - tail] for p in parts}) == 1
    ):
        tail += 1
    return ["/".join(p[head : len(p) - tail]) for p in parts]


def _unique_names(models: list[ExplainedModel]) -> None:
    """Names key the figure columns, the CSV and the .npz: make repeated ones distinct.

    Models with the same name get the part of their file path that differs (for two runs of
    one config, the run folder). The same file listed twice is told apart by its column.
    """
    groups: dict[str, list[int]] = {}
    for i, m in enumerate(models):
        groups.setdefault(m.name, []).append(i)
    for name, members in groups.items():
        if len(members) < 2:
            continue
        files = [i for i in members if not models[i].spec.startswith(IMAGENET)]
        if len(files) > 1:
            suffixes = _distinguishing([_path_parts(models[i].spec) for i in files])
            for i, suffix in zip(files, suffixes, strict=True):
                if suffix:
                    models[i].name = f"{name} ({suffix})"
    names = [m.name for m in models]
    for i, m in enumerate(models):
        if names.count(m.name) > 1:
            m.name = f"{m.name} (column {i + 1})"


def check_names(names: Sequence[str] | None, specs: Sequence[str]) -> list[str] | None:
    """``model_names=[...]``: one non-empty, distinct name per model spec."""
    if names is None:
        return None
    if isinstance(names, str):
        names = [names]
    names = [str(n).strip() for n in names]
    if len(names) != len(specs):
        raise ConfigError(
            f"model_names has {len(names)} name(s) but models has {len(specs)} "
            f"({', '.join(map(str, specs))}); give one name per model, in the same order, or "
            "model_names=null to name them from their checkpoints."
        )
    if not all(names):
        raise ConfigError(f"model_names={names}: a name is empty.")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(
            f"model_names={names}: {', '.join(map(repr, repeated))} is given twice; names "
            "label the figure's columns and the CSV rows, so they must differ."
        )
    return names


def load_models(
    specs: Sequence[str] | str,
    backbone: str | None = None,
    device: str | torch.device | None = "cpu",
    names: Sequence[str] | None = None,
    task: str | None = None,
) -> list[ExplainedModel]:
    """Load every spec; ``imagenet`` without a backbone takes the first checkpoint's backbone.
    ``task``: the task every arttl checkpoint is explained for (default: a multi-task one's
    first task); a checkpoint without it is an error naming its tasks.

    ``names``: one display name per spec (default: from each checkpoint, ``describe_checkpoint``).
    All specs are checked (files exist, names parse) before any network is built, so a typo
    in the third spec does not cost the time of loading the first two.
    """
    if isinstance(specs, str):
        specs = [specs]
    specs = [str(s).strip() for s in specs]
    if not specs:
        raise ConfigError("models=[] is empty; list at least one, e.g. models=[imagenet,run.ckpt].")
    names = check_names(names, specs)
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
            loaded[i] = load_model(spec, backbone=backbone, device=device, task=task)
    if backbone is None:
        backbone = next(
            (loaded[i].backbone for i in sorted(loaded) if specs[i].endswith(CHECKPOINT_SUFFIXES)),
            None,
        )
    for i, spec in enumerate(specs):
        if spec.startswith(IMAGENET):
            loaded[i] = load_model(spec, backbone=backbone, device=device)
    models = [loaded[i] for i in range(len(specs))]
    if names is not None:
        for m, given in zip(models, names, strict=True):
            m.name = given
    else:
        _unique_names(models)
    return models
