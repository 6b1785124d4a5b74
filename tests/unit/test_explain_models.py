"""Model specs for comparison: checkpoints, ImageNet from the local cache only, weight files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from arttl.errors import ConfigError
from arttl.explain.models import (
    ExplainedModel,
    describe_checkpoint,
    load_model,
    load_models,
)
from arttl.inference.runner import resolve_device
from arttl.models.classifier import ArtClassifier
from tests.fixtures.hf_cache import fake_imagenet_cache, imagenet_weights
from tests.fixtures.training import tiny_checkpoint

CLASSES = ["altar", "apse", "vault"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real arttl checkpoint: test_resnet at 64 px, one epoch on 8 random uint8 images."""
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "test_resnet-fine_tune.ckpt", CLASSES)


def test_checkpoint_spec(ckpt: Path) -> None:
    m = load_model(str(ckpt))
    assert isinstance(m.module, ArtClassifier) and not m.module.training
    # Named from its hyper-parameters: random init (tiny_checkpoint's weights=none), fine_tune.
    assert m.name == "test_resnet from random init · fine_tune" and m.backbone == "test_resnet"
    assert m.class_names == CLASSES and m.input_size == (64, 64)
    pixels, x = m.preprocess(Image.new("RGB", (120, 80), (200, 10, 10)))
    assert pixels.dtype == torch.uint8 and pixels.shape == (3, 64, 64)
    # Same normalisation as the classifier's own.
    assert torch.allclose(x, m.module.normalize(pixels.unsqueeze(0)))
    assert m.module(x).shape == (1, 3)


def test_imagenet_without_cached_weights_is_a_clear_error(ckpt: Path, empty_hf_cache) -> None:
    # The bare `imagenet` takes the checkpoint's backbone: the θ-vs-θ̂ pair.
    with pytest.raises(
        ConfigError,
        match=r"models=imagenet: no ImageNet weights for 'test_resnet'.*HF_HUB_OFFLINE=1",
    ):
        load_models(["imagenet", str(ckpt)])
    with pytest.raises(ConfigError, match="needs a backbone"):
        load_models(["imagenet"])
    with pytest.raises(ConfigError, match=r"models: 'imagenet:resnet_50'.*did you mean resnet50"):
        load_model("imagenet:resnet_50")


def test_imagenet_from_the_local_cache(empty_hf_cache: Path) -> None:
    fake_imagenet_cache(empty_hf_cache)
    m = load_models(["imagenet"], backbone="test_resnet")[0]
    assert m.name == "θ ImageNet · test_resnet" and len(m.class_names) == 1000
    assert m.label(0) == "tench" and m.resolve_target("goldfish") == 1
    assert m.input_size == (160, 160)


def test_weights_file_spec(tmp_path: Path) -> None:
    weights = imagenet_weights(tmp_path / "w.safetensors")
    m = load_model(f"test_resnet:{weights}")
    assert m.name == "θ ImageNet · test_resnet (w.safetensors)"
    assert m.class_names[0].startswith("tench")
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


def _with_hparams(src: Path, dst: Path, provenance: dict | None = None, **hparams) -> Path:
    """A copy of a real checkpoint whose hyper-parameters say it was trained otherwise."""
    raw = torch.load(src, map_location="cpu", weights_only=False)
    raw["hyper_parameters"].update(hparams)
    if provenance is not None:
        raw["arttl_provenance"] = provenance
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save(raw, dst)
    return dst


def test_names_from_checkpoint_hparams(ckpt: Path, tmp_path: Path) -> None:
    """θ = started from ImageNet; θ̂ = started from another arttl checkpoint (named by what that
    one was tuned on, read from its own file); scratch; generic readers name their folder."""
    theta = _with_hparams(
        ckpt, tmp_path / "rijks.ckpt", weights="imagenet", experiment="rijks_artist"
    )
    objects = {"run_config": {"dataset": {"name": "imagefolder", "root": "/data/demo/objects"}}}
    theta_hat = _with_hparams(
        ckpt,
        tmp_path / "antwerp.ckpt",
        objects,
        weights=str(theta),
        experiment="default",
        dataset="imagefolder",
        challenge="class",
    )
    scratch = _with_hparams(
        ckpt, tmp_path / "s.ckpt", mode="scratch", experiment="default", dataset="demo"
    )
    names = [m.name for m in load_models([str(theta), str(theta_hat), str(scratch)])]
    assert names == [
        "θ̂ rijks_artist-tuned test_resnet (from ImageNet) · fine_tune",
        "θ̂ rijks_artist-tuned test_resnet · fine_tune on demo/objects",
        "test_resnet from scratch · demo",
    ]
    # The source checkpoint is gone: its stable name's experiment folder, else its file name.
    hp = {"backbone": "vgg19", "mode": "fine_tune", "experiment": "antwerp_type_from_rijks"}
    gone = "/elsewhere/checkpoints/rijks_type/vgg19-fine_tune.ckpt"
    assert describe_checkpoint({**hp, "weights": gone}) == (
        "θ̂ rijks_type-tuned vgg19 · fine_tune on antwerp_type_from_rijks"
    )
    assert describe_checkpoint({**hp, "weights": "/nowhere/paintings.ckpt"}).startswith(
        "θ̂ paintings-tuned vgg19"
    )
    # A pretrained tag stays in the name (which ImageNet weights θ was); θ fine-tuned on an art
    # collection is the paper's θ̂, off-the-shelf keeps θ's features under a new head.
    assert describe_checkpoint({**hp, "weights": "imagenet:fb_in22k"}) == (
        "θ̂ antwerp_type_from_rijks-tuned vgg19.fb_in22k (from ImageNet) · fine_tune"
    )
    assert describe_checkpoint({**hp, "mode": "off_the_shelf", "weights": "imagenet"}) == (
        "θ ImageNet vgg19 + antwerp_type_from_rijks head (off-the-shelf)"
    )
    # A dataset's challenge is said when it is not the generic one; weights files by name.
    assert describe_checkpoint(
        {"backbone": "resnet50", "mode": "off_the_shelf", "weights": "/w/in21k.safetensors",
         "dataset": "rijksmuseum", "challenge": "material"}
    ) == "resnet50 from in21k.safetensors · off_the_shelf on rijksmuseum (material)"  # fmt: skip


def test_same_names_get_the_run_folder_never_a_number(ckpt: Path, tmp_path: Path) -> None:
    runs = [tmp_path / "outputs" / "demo" / day / "checkpoints" / "best.ckpt" for day in
            ("2024-05-01_10-00-00", "2024-05-02_09-30-00")]  # fmt: skip
    for run in runs:
        run.parent.mkdir(parents=True)
        run.write_bytes(ckpt.read_bytes())
    names = [m.name for m in load_models([str(r) for r in runs])]
    base = "test_resnet from random init · fine_tune"
    assert names == [f"{base} (2024-05-01_10-00-00)", f"{base} (2024-05-02_09-30-00)"]
    # Different file names in one folder: the file names tell them apart.
    theta, theta_hat = tmp_path / "theta.ckpt", tmp_path / "theta_hat.ckpt"
    theta.write_bytes(ckpt.read_bytes())
    theta_hat.write_bytes(ckpt.read_bytes())
    names = [m.name for m in load_models([str(theta), str(theta_hat)])]
    assert names == [f"{base} (theta)", f"{base} (theta_hat)"]
    # The same file twice can only be told apart by its column.
    names = [m.name for m in load_models([str(theta), str(theta_hat), str(theta)])]
    assert names == [
        f"{base} (theta) (column 1)",
        f"{base} (theta_hat)",
        f"{base} (theta) (column 3)",
    ]
    assert not any("#" in n for n in names)


def test_model_names_override(ckpt: Path) -> None:
    models = load_models([str(ckpt), str(ckpt)], names=["ImageNet", "Rijksmuseum artists"])
    assert [m.name for m in models] == ["ImageNet", "Rijksmuseum artists"]
    with pytest.raises(ConfigError, match=r"model_names has 1 name\(s\) but models has 2"):
        load_models([str(ckpt), str(ckpt)], names=["ImageNet"])
    with pytest.raises(ConfigError, match=r"'a' is given twice"):
        load_models([str(ckpt), str(ckpt)], names=["a", "a"])
    with pytest.raises(ConfigError, match="a name is empty"):
        load_models([str(ckpt)], names=[" "])


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
