"""Normalising uint8 batches on the device equals torchvision's float normalisation on the CPU."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms import v2

from arttl.models.classifier import ArtClassifier


@pytest.fixture(scope="module")
def model() -> ArtClassifier:
    return ArtClassifier("test_resnet", num_classes=3, weights="none", image_size=32).eval()


def _reference(x: torch.Tensor, model: ArtClassifier) -> torch.Tensor:
    cfg = model.data_config
    return v2.Normalize(cfg["mean"], cfg["std"])(x.float() / 255.0)


def test_uint8_normalize_equals_torchvision_normalize(model):
    x = torch.randint(
        0, 256, (4, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    torch.testing.assert_close(model.normalize(x), _reference(x, model), rtol=1e-5, atol=1e-5)


def test_float01_input_is_normalised_the_same_way(model):
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    torch.testing.assert_close(
        model.normalize(x.float() / 255.0), model.normalize(x), rtol=1e-5, atol=1e-5
    )


@pytest.mark.gpu
def test_cuda_normalize_equals_cpu_normalize(model):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    gpu = model.to("cuda").normalize(x.to("cuda")).cpu()
    model.to("cpu")
    torch.testing.assert_close(gpu, _reference(x, model), rtol=1e-5, atol=1e-5)
