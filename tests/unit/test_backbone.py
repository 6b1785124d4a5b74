"""The backbone factory: preprocessing from timm's data config, and every weight source."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from arttl.errors import ConfigError
from arttl.models.backbone import create_backbone
from tests.unit.test_explain_models import empty_hf_cache, fake_imagenet_cache  # noqa: F401


@pytest.mark.parametrize(
    ("name", "size", "interpolation", "mean"),
    [
        ("inception_v3", 299, "bicubic", (0.5, 0.5, 0.5)),
        ("resnet18", 224, "bicubic", (0.485, 0.456, 0.406)),
    ],
)
def test_preprocessing_comes_from_timm(name, size, interpolation, mean) -> None:
    model, config = create_backbone(name, "none")
    assert config == dict(timm.data.resolve_model_data_config(model))
    assert config["input_size"] == (3, size, size)
    assert config["interpolation"] == interpolation
    assert tuple(config["mean"]) == pytest.approx(mean)
    _, small = create_backbone(name, "none", image_size=64)
    assert small["input_size"] == (3, 64, 64) and small["mean"] == config["mean"]


def _timm_state(seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return timm.create_model("test_resnet", pretrained=False).state_dict()


@pytest.mark.parametrize("suffix", [".safetensors", ".pth", ".bin"])
def test_weights_file_loads_every_backbone_tensor(tmp_path: Path, suffix: str) -> None:
    state = _timm_state(seed=3)
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    model, _ = create_backbone("test_resnet", str(path))
    loaded = model.state_dict()
    assert loaded, "no tensors"
    for key, tensor in loaded.items():  # the classifier is dropped (num_classes=0)
        assert torch.equal(tensor, state[key]), key


def test_weights_file_of_another_architecture_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "vit.safetensors"
    save_file(timm.create_model("test_vit", pretrained=False).state_dict(), str(path))
    with pytest.raises(ConfigError, match=r"does not fit backbone 'test_resnet'"):
        create_backbone("test_resnet", str(path))


def test_imagenet_weights_come_from_the_local_cache(empty_hf_cache: Path) -> None:  # noqa: F811
    cached = fake_imagenet_cache(empty_hf_cache)
    from safetensors.torch import load_file

    state = load_file(str(cached))
    model, config = create_backbone("test_resnet", "imagenet")
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, state[key]), key
    assert config["input_size"] == (3, 160, 160)  # the pretrained tag's own data config
