"""Attribution methods: shapes, the planted-signal check, model state left untouched, errors.

Every method on the paper's four backbones: tests/integration/test_explain_backbones.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from torch import nn

from arttl.errors import ConfigError
from arttl.explain.methods import (
    METHODS,
    check_method,
    explain,
    feature_stages,
    method_names,
    resolve_layer,
)
from tests.fixtures.planted import COLS, ROWS, SIZE, Planted, planted_input

# Fast settings: the maps' correctness does not depend on sample counts.
FAST = {
    "integrated_gradients": {"n_steps": 8},
    "smoothgrad": {"nt_samples": 4},
    "occlusion": {"window": 8, "stride": 4, "batch_size": 64},
}


def region_mass(a: np.ndarray, margin: int) -> float:
    """Share of the map's (positive) mass inside the planted region grown by ``margin`` px."""
    a = np.clip(a, 0, None)
    inside = np.zeros_like(a, dtype=bool)
    inside[ROWS.start - margin : ROWS.stop + margin, COLS.start - margin : COLS.stop + margin] = (
        True
    )
    return float(a[inside].sum() / a.sum())


def test_registry_has_the_issue_methods() -> None:
    assert set(method_names()) == {
        "saliency",
        "integrated_gradients",
        "guided_backprop",
        "smoothgrad",
        "gradcam",
        "occlusion",
        "visual_backprop",
    }


def test_unknown_method_and_option_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match=r"method='gradcamm'.*did you mean gradcam"):
        check_method("gradcamm")
    with pytest.raises(ConfigError, match=r"n_step.*integrated_gradients.*n_steps"):
        check_method("integrated_gradients", {"n_step": 3})


@pytest.mark.parametrize("method", sorted(METHODS))
def test_planted_signal_gets_the_saliency(method: str) -> None:
    model = Planted()
    e = explain(model, planted_input(), method, **FAST.get(method, {}))
    assert e.map.shape == (SIZE, SIZE) and np.isfinite(e.map).all() and np.ptp(e.map) > 0
    assert e.target == 0 and e.probability > 0.5
    # Receptive fields / upsampling / occlusion windows spread a map by a few pixels.
    margin = {"gradcam": 6, "occlusion": 8, "visual_backprop": 4}.get(method, 0)
    assert region_mass(e.map, margin) > 0.9, region_mass(e.map, margin)
    # Region in the strict sense still holds most of the mass for every method.
    assert region_mass(e.map, 0) > 0.5


def test_model_state_is_restored() -> None:
    model = Planted().train()
    model.stem[0].weight.grad = torch.full_like(model.stem[0].weight, 7.0)
    model.head.bias.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for method in METHODS:
        explain(model, planted_input(), method, **FAST.get(method, {}))
    assert all(m.training for m in model.modules())
    assert torch.equal(model.stem[0].weight.grad, torch.full_like(model.stem[0].weight, 7.0))
    assert model.head.weight.grad is None and model.stage1[0].weight.grad is None
    assert model.stem[0].weight.requires_grad and not model.head.bias.requires_grad
    assert all(m.inplace for m in model.modules() if isinstance(m, nn.ReLU))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_batchnorm_statistics_do_not_move_and_training_flag_restored() -> None:
    model = timm.create_model("test_resnet", pretrained=False, num_classes=3).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    e = explain(model, torch.randn(3, SIZE, SIZE), "guided_backprop")
    assert e.map.shape == (SIZE, SIZE)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("name", ["test_convnext", "test_efficientnet", "test_resnet"])
def test_small_timm_cnns_every_method(name: str) -> None:
    model = timm.create_model(name, pretrained=False, num_classes=4)
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    for method in METHODS:
        m = explain(model, x, method, **FAST.get(method, {})).map
        assert m.shape == (SIZE, SIZE), method
        assert np.isfinite(m).all() and np.ptp(m) > 0, method


def test_vit_gradient_methods_work_and_layer_methods_explain_why_not() -> None:
    model = timm.create_model("test_vit", pretrained=False, num_classes=4, img_size=SIZE)
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    for method in (
        "saliency",
        "integrated_gradients",
        "guided_backprop",
        "smoothgrad",
        "occlusion",
    ):
        m = explain(model, x, method, **FAST.get(method, {})).map
        assert m.shape == (SIZE, SIZE) and np.isfinite(m).all() and np.ptp(m) > 0, method
    for method in ("gradcam", "visual_backprop"):
        with pytest.raises(ConfigError, match=r"convolutional feature map.*use saliency"):
            explain(model, x, method)


def test_target_and_layer_options() -> None:
    model = timm.create_model("test_resnet", pretrained=False, num_classes=4)
    x = torch.randn(1, 3, SIZE, SIZE)
    e = explain(model, x, "gradcam", target=2, layer="layer3")
    assert e.target == 2 and e.map.shape == (SIZE, SIZE)
    with pytest.raises(ConfigError, match=r"method_options.layer='layer9'.*layer4"):
        explain(model, x, "gradcam", layer="layer9")
    with pytest.raises(ConfigError, match=r"target=7 is out of range"):
        explain(model, x, "saliency", target=7)
    with pytest.raises(ConfigError, match=r"no timm feature_info"):
        explain(
            nn.Sequential(nn.Conv2d(3, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()), x, "gradcam"
        )


def test_feature_stages_found_inside_a_wrapper() -> None:
    """An ArtClassifier keeps its timm network under ``backbone``: stages get that prefix."""
    wrapper = nn.Module()
    wrapper.backbone = timm.create_model("test_resnet", pretrained=False, num_classes=0)
    names = [s.name for s in feature_stages(wrapper)]
    assert names == ["backbone.act1", "backbone.layer1", "backbone.layer2", "backbone.layer3",
                     "backbone.layer4"]  # fmt: skip
    assert resolve_layer(wrapper, "layer2").name == "backbone.layer2"
    assert resolve_layer(wrapper).name == "backbone.layer4"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_every_method_on_cuda() -> None:
    model, x = Planted().cuda(), planted_input().cuda()
    for method in METHODS:
        e = explain(model, x, method, **FAST.get(method, {}))
        assert isinstance(e.map, np.ndarray) and e.map.shape == (SIZE, SIZE), method
        assert region_mass(e.map, 8) > 0.9, method
    assert all(p.is_cuda for p in model.parameters())
