"""Model specs for comparison: checkpoints, ImageNet from the local cache only, weight files."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub.constants
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import save_file

from arttl.errors import ConfigError
from arttl.explain.models import ExplainedModel, load_model, load_models, resolve_device
from arttl.models.classifier import ArtClassifier
from tests.fixtures.training import tiny_checkpoint

CLASSES = ["altar", "apse", "vault"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real arttl checkpoint: test_resnet at 64 px, one epoch on 8 random uint8 images."""
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "test_resnet-fine_tune.ckpt", CLASSES)


@pytest.fixture
def empty_hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hf"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


def _imagenet_weights(path: Path) -> Path:
    torch.manual_seed(0)
    save_file(timm.create_model("test_resnet", pretrained=False).state_dict(), str(path))
    return path


def fake_imagenet_cache(cache: Path) -> Path:
    """A Hugging Face cache laid out as a real download of timm/test_resnet.r160_in1k leaves it
    (random weights with the 1000-class ImageNet head), so `imagenet` loads with no network."""
    repo = cache / "models--timm--test_resnet.r160_in1k"
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    return _imagenet_weights(snapshot / "model.safetensors")


def test_checkpoint_spec(ckpt: Path) -> None:
    m = load_model(str(ckpt))
    assert isinstance(m.module, ArtClassifier) and not m.module.training
    assert m.name == "test_resnet-fine_tune" and m.backbone == "test_resnet"
    assert m.class_names == CLASSES and m.input_size == (64, 64)
    pixels, x = m.preprocess(Image.new("RGB", (120, 80), (200, 10, 10)))
    assert pixels.dtype == torch.uint8 and pixels.shape == (3, 64, 64)
    # Same normalisation as the classifier's own.
    assert torch.allclose(x, m.module.normalize(pixels.unsqueeze(0)))
    assert m.module(x).shape == (1, 3)


def test_imagenet_without_cached_weights_is_a_clear_error(ckpt: Path, empty_hf_cache) -> None:
    # The bare `imagenet` takes the checkpoint's backbone: the θ-vs-θ̂ pair.
    with pytest.raises(
        ConfigError, match=r"no ImageNet weights for 'test_resnet'.*never downloads"
    ):
        load_models(["imagenet", str(ckpt)])
    with pytest.raises(ConfigError, match="needs a backbone"):
        load_models(["imagenet"])
    with pytest.raises(ConfigError, match=r"models: 'imagenet:resnet_50'.*did you mean resnet50"):
        load_model("imagenet:resnet_50")


def test_imagenet_from_the_local_cache(empty_hf_cache: Path) -> None:
    fake_imagenet_cache(empty_hf_cache)
    m = load_models(["imagenet"], backbone="test_resnet")[0]
    assert m.name == "imagenet:test_resnet" and len(m.class_names) == 1000
    assert m.label(0) == "tench" and m.resolve_target("goldfish") == 1
    assert m.input_size == (160, 160)


def test_weights_file_spec(tmp_path: Path) -> None:
    weights = _imagenet_weights(tmp_path / "w.safetensors")
    m = load_model(f"test_resnet:{weights}")
    assert m.name == "test_resnet:w" and m.class_names[0].startswith("tench")
    assert load_model(str(weights), backbone="test_resnet").backbone == "test_resnet"
    with pytest.raises(ConfigError, match="say which architecture"):
        load_model(str(weights))
    with pytest.raises(ConfigError, match="do not fit 'test_vit'"):
        load_model(f"test_vit:{weights}")


def test_bad_specs(tmp_path: Path, ckpt: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.ckpt'.*checkpoint not found"):
        load_models([str(ckpt), str(tmp_path / "missing.ckpt")])
    with pytest.raises(ConfigError, match="weights file not found"):
        load_models([str(tmp_path / "w.safetensors")], backbone="test_resnet")
    with pytest.raises(ConfigError, match="is not a model spec"):
        load_models(["resnet50"])
    with pytest.raises(ConfigError, match="empty"):
        load_models([])
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="not a readable arttl checkpoint"):
        load_model(str(junk))
    torch.save({"state_dict": {}}, tmp_path / "foreign.ckpt")
    with pytest.raises(ConfigError, match="not an arttl checkpoint"):
        load_model(str(tmp_path / "foreign.ckpt"))


def test_names_are_made_unique(ckpt: Path, tmp_path: Path) -> None:
    other = tmp_path / "run2" / ckpt.name
    other.parent.mkdir()
    other.write_bytes(ckpt.read_bytes())
    names = [m.name for m in load_models([str(ckpt), str(other), str(ckpt)])]
    assert len(set(names)) == 3 and names[1] == f"run2/{ckpt.stem}"


def test_targets_and_crop_geometry() -> None:
    m = ExplainedModel(
        name="m",
        module=torch.nn.Linear(1, 1),
        data_config={
            "input_size": (3, 224, 224),
            "crop_pct": 0.875,
            "crop_mode": "center",
            "mean": (0.5,) * 3,
            "std": (0.5,) * 3,
        },
        class_names=["tench, Tinca tinca", "goldfish"],
        spec="x",
        backbone="x",
    )
    assert m.crop_fraction == pytest.approx(224 / 256)
    assert m.resolve_target(None) is None and m.resolve_target("1") == 1
    assert m.resolve_target("tench") == 0 and m.resolve_target("tench, Tinca tinca") == 0
    with pytest.raises(ConfigError, match="has 2 classes"):
        m.resolve_target(5)
    m.data_config["crop_mode"] = "squash"
    assert m.crop_fraction is None


def test_resolve_device() -> None:
    assert resolve_device(None).type in ("cpu", "cuda") and resolve_device("cpu").type == "cpu"
    with pytest.raises(ConfigError, match="device='gpu0' is not valid"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")
