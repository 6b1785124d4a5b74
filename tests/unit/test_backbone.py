"""The backbone factory: preprocessing from timm's data config, and every weight source."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from omegaconf import OmegaConf
from safetensors.torch import save_file

from arttl.config import CONF_DIR
from arttl.errors import ConfigError
from arttl.models.backbone import check_backbone_name, create_backbone
from arttl.models.weights import pretrained_name
from tests.fixtures.hf_cache import fake_imagenet_cache


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


def test_weights_file_lacking_a_tensor_is_refused_and_extra_ones_warn(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = _timm_state(seed=3)
    extra = tmp_path / "extra.safetensors"
    save_file({**state, "adapter.weight": torch.zeros(2)}, str(extra))
    with caplog.at_level("WARNING", logger="arttl.models.backbone"):
        create_backbone("test_resnet", str(extra))
    assert "1 tensors of the file are not in backbone 'test_resnet'" in caplog.text
    assert "adapter.weight" in caplog.text and "fc.weight" not in caplog.text  # head: dropped
    lacking = tmp_path / "lacking.safetensors"
    first = next(iter(state))
    save_file({k: v for k, v in state.items() if k != first}, str(lacking))
    with pytest.raises(ConfigError, match=rf"1 tensors were not in the file \({first}\)"):
        create_backbone("test_resnet", str(lacking))


def test_imagenet_weights_come_from_the_local_cache(empty_hf_cache: Path) -> None:
    cached = fake_imagenet_cache(empty_hf_cache)
    from safetensors.torch import load_file

    state = load_file(str(cached))
    model, config = create_backbone("test_resnet", "imagenet")
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, state[key]), key
    assert config["input_size"] == (3, 160, 160)  # the pretrained tag's own data config


def test_backbone_names_may_carry_a_pretrained_tag() -> None:
    check_backbone_name("convnext_tiny.fb_in22k")
    with pytest.raises(
        ConfigError,
        match=r"no pretrained tag 'fb_in21k' for 'convnext_tiny'; choose one of: .*fb_in22k",
    ):
        check_backbone_name("convnext_tiny.fb_in21k")
    with pytest.raises(
        ConfigError, match=r"'resnet5O\.a1_in1k' is not a timm model; did you mean resnet50"
    ):
        check_backbone_name("resnet5O.a1_in1k")
    _, config = create_backbone("tf_efficientnetv2_s.in21k_ft_in1k", "none")
    assert config["input_size"] == (3, 300, 300)  # the tag's data config, also without weights


def test_unknown_weights_value_is_refused() -> None:
    with pytest.raises(
        ConfigError, match=r"'imagnet' is not valid; use imagenet, imagenet:<timm tag>"
    ):
        create_backbone("test_resnet", "imagnet")


# preset -> (timm name, input size in px the preset trains at)
NEW_PRESETS = {
    "dinov2_vits14": ("vit_small_patch14_dinov2.lvd142m", 224),  # timm's own: 518
    "clip_vitb16": ("vit_base_patch16_clip_224.openai", 224),
    "convnext_tiny_in22k": ("convnext_tiny.fb_in22k", 224),
    "efficientnetv2_s": ("tf_efficientnetv2_s.in21k_ft_in1k", 300),
    "tf_efficientnet_lite0": ("tf_efficientnet_lite0", 224),
}


def test_every_preset_names_timm_pretrained_weights() -> None:
    presets = {p.stem: OmegaConf.load(p) for p in sorted((CONF_DIR / "backbone").glob("*.yaml"))}
    assert set(NEW_PRESETS) <= set(presets)
    for stem, preset in presets.items():
        check_backbone_name(preset.name)
        if preset.weights == "imagenet":
            assert pretrained_name(preset.name) in timm.list_pretrained(), stem
    for stem, (name, size) in NEW_PRESETS.items():
        preset = presets[stem]
        assert preset.name == name, stem
        cfg = timm.models.get_pretrained_cfg(pretrained_name(name))
        assert (preset.image_size or cfg.input_size[-1]) == size, stem
