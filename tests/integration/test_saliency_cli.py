"""`python -m arttl.saliency` on three real paintings the repository carries (the notebook's
defaults, from data/demo/paintings) with two real checkpoints: runs in a plain clone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import huggingface_hub.constants
import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from PIL import Image

from arttl.config import CONF_DIR
from arttl.errors import ConfigError
from arttl.saliency import run_saliency
from tests.fixtures.hf_cache import fake_imagenet_cache
from tests.fixtures.training import tiny_checkpoint

PAINTINGS = Path(__file__).resolve().parents[2] / "data" / "demo" / "paintings"
SOURCES = ["Baroque/1011.jpg", "Impressionism/10042.jpg", "Expressionism/10006.jpg"]
NAMES = ["10006.jpg", "10042.jpg", "1011.jpg"]  # a folder is listed by file name
CLASSES = ["etching", "painting", "drawing"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("saliency")
    (root / "paintings").mkdir()
    for rel in SOURCES:
        shutil.copy(PAINTINGS / rel, root / "paintings")
    tiny_checkpoint(root / "theta.ckpt", CLASSES, seed=0)
    tiny_checkpoint(root / "theta_hat.ckpt", CLASSES, seed=1)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut off after the header")
    (root / "hf").mkdir()  # an empty Hugging Face cache: nothing may be downloaded
    return root


def _run(args: list[str], root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_CACHE": str(root / "hf"), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "arttl.saliency", *args, f"hydra.run.dir={root}/hydra"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_one_command_renders_theta_vs_theta_hat(workdir: Path) -> None:
    out = workdir / "out"
    proc = _run(
        [
            f"images=[{workdir / 'paintings'},{workdir / 'broken.jpg'}]",
            f"models=[{workdir / 'theta.ckpt'},{workdir / 'theta_hat.ckpt'}]",
            "method=visual_backprop",
            "deletion_steps=4",
            "deletion_random=2",
            f"out_dir={out}",
        ],
        workdir,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = " ".join(proc.stdout.split())  # rich wraps long lines
    assert "broken.jpg" in text and "skipped" in text
    assert "spearman" in text and NAMES[0] in text

    with Image.open(out / "saliency_visual_backprop.png") as fig:
        # 3 rows x 3 columns of >= 3-inch cells at 130 dpi, plus titles and the numbers.
        assert fig.size[0] > 3 * 3 * 130 and fig.size[1] > 3 * 3 * 130
        assert np.asarray(fig.convert("L")).std() > 10
    with Image.open(out / "saliency_visual_backprop_raw.png") as raw:
        assert raw.size == fig.size

    maps = np.load(out / "saliency_visual_backprop.npz")
    assert list(maps["image_names"]) == NAMES
    # Named by what they are (tiny_checkpoint: random init, fine_tune); the same name twice is
    # told apart by the part of the path that differs.
    named = "test_resnet from random init · fine_tune"
    assert list(maps["model_names"]) == [f"{named} (theta)", f"{named} (theta_hat)"]
    assert maps["maps"].shape == (3, 2, 64, 64) and np.isfinite(maps["maps"]).all()
    assert all(np.ptp(m) > 0 for m in maps["maps"].reshape(6, -1))
    assert set(maps["labels"].ravel()) <= set(CLASSES)

    csv = pd.read_csv(out / "agreement_visual_backprop.csv")
    assert list(csv.image) == NAMES
    assert (csv.model_a == f"{named} (theta)").all()
    assert (csv.model_b == f"{named} (theta_hat)").all()
    assert csv.spearman.between(-1, 1).all() and csv.top_iou.between(0, 1).all()
    assert csv.prob_a.between(0, 1).all() and csv.deletion_auc_b.between(0, 1).all()


def test_imagenet_without_cached_weights_exits_with_a_message(workdir: Path) -> None:
    proc = _run(
        [f"images={workdir / 'paintings'}", f"models=[imagenet,{workdir / 'theta_hat.ckpt'}]"],
        workdir,
    )
    assert proc.returncode == 2
    assert "error: models=imagenet: no ImageNet weights for 'test_resnet'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_imagenet_versus_checkpoint_in_process(
    workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """θ vs θ̂: a bare `imagenet` takes the checkpoint's backbone (160 px ImageNet config) and is
    compared with the 64-px art checkpoint on one grid; weights come from a local HF cache."""
    fake_imagenet_cache(tmp_path / "hf")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    cfg = _cfg(
        [
            f"images={workdir / 'paintings' / NAMES[1]}",
            f"models=[imagenet,{workdir / 'theta_hat.ckpt'}]",
            "method=gradcam",
            "deletion_steps=2",
            "deletion_random=1",
            "model_names=[ImageNet,art-tuned]",
        ]
    )
    paths = run_saliency(cfg, tmp_path / "out")
    csv = pd.read_csv(paths["agreement"])
    assert list(csv.model_a) == ["ImageNet"] and list(csv.model_b) == ["art-tuned"]
    assert np.load(paths["maps"])["maps"].shape == (1, 2, 160, 160)


def _cfg(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="saliency", overrides=overrides)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["method=gradcamm"], r"method='gradcamm'.*did you mean gradcam"),
        (["method_options={layer: layer9}", "method=gradcam"], r"layer='layer9'"),
        (["models=[/nowhere/run.ckpt]"], r"'/nowhere/run.ckpt': checkpoint not found"),
        (["images=null"], r"images is not set"),
        (["images=/nowhere"], r"images='/nowhere': no such file or folder"),
        (["model_names=[a,b]"], r"model_names has 2 name\(s\) but models has 1"),
        (["cmap=infernal"], r"cmap='infernal' is not a matplotlib colour map.*inferno, viridis"),
    ],
)
def test_bad_config_is_a_clear_error(workdir: Path, overrides: list[str], message: str) -> None:
    base = [
        f"images={workdir / 'paintings'}",
        f"models=[{workdir / 'theta.ckpt'}]",
        "deletion_steps=0",
    ]
    cfg = _cfg(base + overrides)
    with pytest.raises(ConfigError, match=message):
        run_saliency(cfg, workdir / "bad")
    assert not (workdir / "bad").exists()  # nothing half-written


def test_every_image_broken_is_an_error(workdir: Path) -> None:
    cfg = _cfg([f"images={workdir / 'broken.jpg'}", f"models=[{workdir / 'theta.ckpt'}]"])
    with pytest.raises(ConfigError, match=r"none of the 1 files could be decoded.*broken\.jpg"):
        run_saliency(cfg, workdir / "bad")
