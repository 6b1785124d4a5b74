"""Every method on the paper's four backbones (timm names, random weights, small inputs)."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch

from arttl.explain.methods import METHODS, explain, feature_stages

# Smallest inputs that leave the deepest stage at least 2x2 (GradCAM needs some "where").
PAPER_BACKBONES = {"vgg19": 64, "inception_v3": 128, "resnet50": 64, "legacy_xception": 64}
FAST = {
    "integrated_gradients": {"n_steps": 4, "internal_batch_size": 4},
    "smoothgrad": {"nt_samples": 3, "batch_size": 3},
    "occlusion": {"window": 16, "stride": 16, "batch_size": 16},
}


def test_xception_name_exists_in_this_timm() -> None:
    # The paper's Xception is timm's legacy_xception (conf/backbone/xception.yaml).
    assert "legacy_xception" in timm.list_models("*xception*")


# Methods whose code path depends on the architecture (layers found from feature_info, ReLU
# hooks) run in the fast suite; the repeated-forward ones (integrated gradients, smoothgrad,
# occlusion) only add cost there, so they run with the slow tests.
LAYER_AND_HOOK_METHODS = ("saliency", "guided_backprop", "gradcam", "visual_backprop")


def _paper_model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=5)
    # Randomly initialised deep nets give near-zero features, so the logits are ~ the biases
    # and Grad-CAM (ReLU of evidence for the class) can be legitimately all zero. Without the
    # bias the top-1 logit is the evidence itself, as in a trained network.
    with torch.no_grad():
        model.get_classifier().bias.zero_()
    return model


def _check(name: str, methods: tuple[str, ...] | list[str]) -> None:
    size = PAPER_BACKBONES[name]
    model = _paper_model(name)
    assert len(feature_stages(model)) >= 4
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    for method in methods:
        m = explain(model, x, method, **FAST.get(method, {})).map
        assert m.shape == (size, size), method
        assert np.isfinite(m).all() and np.ptp(m) > 0, method


@pytest.mark.parametrize("name", sorted(PAPER_BACKBONES))
def test_layer_and_hook_methods_on_paper_backbone(name: str) -> None:
    _check(name, LAYER_AND_HOOK_METHODS)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PAPER_BACKBONES))
def test_sampling_methods_on_paper_backbone(name: str) -> None:
    _check(name, [m for m in METHODS if m not in LAYER_AND_HOOK_METHODS])
