"""store.format=raw: fixed-size uint8 arrays, read like JPEG stores, a store of its own."""

from __future__ import annotations

import functools
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from arttl.data.build import StoreSettings, prepare_dataset
from arttl.data.datamodule import StoreDataModule
from arttl.data.images import load_rgb
from arttl.data.store import SPLITS, H5ImageDataset, read_attrs, split_file
from arttl.errors import ConfigError
from tests.fixtures.raw_datasets import READERS, make_imagefolder

RAW = StoreSettings(shorter_side=24, quality=90, seed=0, format="raw")
JPEG = StoreSettings(shorter_side=24, quality=90, seed=0, format="jpeg")
DATA_CONFIG = {
    "input_size": (3, 16, 16),
    "interpolation": "bilinear",
    "mean": (0.485, 0.456, 0.406),
    "std": (0.229, 0.224, 0.225),
    "crop_pct": 0.875,
    "crop_mode": "center",
}


def prepare(ds, store: Path, settings: StoreSettings, workers: int = 1) -> dict:
    reader = functools.partial(READERS[ds.source], **ds.options)
    return prepare_dataset(
        ds.source, ds.challenge, ds.root, reader, store, settings, workers, False, ds.options
    )


@pytest.fixture
def folder(tmp_path):
    return make_imagefolder(tmp_path / "raw", n_per_class=10, classes=("a", "b", "c"))


def test_raw_store_round_trip(tmp_path, folder):
    prepare(folder, tmp_path / "store", RAW)
    for split in SPLITS:
        path = split_file(tmp_path / "store", split)
        with h5py.File(path, "r") as f:
            assert f["images"].dtype == np.uint8 and f["images"].shape[1:] == (24, 24, 3)
            assert f.attrs["image_format"] == "raw"
        data = H5ImageDataset(path, transform=np.asarray)
        assert data.is_raw
        for i, source in enumerate(data.paths()):
            image, label = data[i]
            assert image.shape == (24, 24, 3) and image.dtype == np.uint8
            assert data.class_names[label] == Path(source).parent.name
            # The stored pixels are the source scaled to the shorter side and centre-cropped.
            src = np.asarray(load_rgb(source), dtype=np.int16)
            assert abs(image.astype(np.int16).mean() - src.mean()) < 2.0


def test_raw_store_is_independent_of_the_worker_count(tmp_path, folder):
    prepare(folder, tmp_path / "one", RAW, workers=1)
    prepare(folder, tmp_path / "two", RAW, workers=2)
    for split in SPLITS:
        one = split_file(tmp_path / "one", split).read_bytes()
        assert one == split_file(tmp_path / "two", split).read_bytes()


def test_format_is_part_of_the_store_identity(tmp_path, folder):
    store = tmp_path / "store"
    prepare(folder, store, JPEG)
    jpeg_hash = read_attrs(split_file(store, "train"))["config_hash"]
    assert prepare(folder, store, RAW)["reused"] is False
    assert read_attrs(split_file(store, "train"))["config_hash"] != jpeg_hash
    assert prepare(folder, store, RAW)["reused"] is True


def test_raw_and_jpeg_stores_feed_the_same_batches_shape(tmp_path, folder):
    prepare(folder, tmp_path / "raw_store", RAW)
    prepare(folder, tmp_path / "jpeg_store", JPEG)
    for store in ("raw_store", "jpeg_store"):
        dm = StoreDataModule(tmp_path / store, DATA_CONFIG, batch_size=4, num_workers=0)
        dm.setup()
        x, y = next(iter(dm.train_dataloader()))
        assert x.dtype == torch.uint8 and x.shape == (4, 3, 16, 16) and y.shape == (4,)


def test_bad_format_choices_are_config_errors():
    with pytest.raises(ConfigError, match=r"store\.format='png'"):
        StoreSettings(format="png")
    with pytest.raises(ConfigError, match=r"store\.shorter_side"):
        StoreSettings(shorter_side=None, format="raw")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_gpu_decode_without_cuda_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"data\.gpu_decode=true"):
        StoreDataModule(tmp_path, DATA_CONFIG, gpu_decode=True)


@pytest.mark.gpu
def test_gpu_decode_yields_uint8_batches_on_cuda(tmp_path, folder):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    prepare(folder, tmp_path / "store", JPEG)
    dm = StoreDataModule(
        tmp_path / "store", DATA_CONFIG, batch_size=4, num_workers=0, gpu_decode=True
    )
    dm.setup()
    batch = next(iter(dm.val_dataloader()))
    x, y = dm.on_before_batch_transfer(batch, 0)
    assert x.is_cuda and x.dtype == torch.uint8 and x.shape == (4, 3, 16, 16)
    # Same pixels as the CPU eval path, up to decoder and resampling differences.
    cpu = StoreDataModule(tmp_path / "store", DATA_CONFIG, batch_size=4, num_workers=0)
    cpu.setup()
    ref, ref_y = next(iter(cpu.val_dataloader()))
    assert torch.equal(y, ref_y)
    assert (x.cpu().float() - ref.float()).abs().mean() < 8.0


def test_gpu_decode_transform_logic_on_the_cpu_device(tmp_path, folder):
    """The nvJPEG path's decode + crop, run with device=cpu (torchvision decodes there too)."""
    from arttl.data.transforms import GpuDecode, collate_encoded

    prepare(folder, tmp_path / "store", JPEG)
    data = H5ImageDataset(split_file(tmp_path / "store", "val"), encoded=True)
    encoded, labels = collate_encoded([data[i] for i in range(len(data))])
    assert torch.equal(labels, torch.as_tensor(data.labels))
    for training in (True, False):
        x = GpuDecode(DATA_CONFIG)(encoded, training, device="cpu")
        assert x.dtype == torch.uint8 and x.shape == (len(data), 3, 16, 16)
    with pytest.raises(ConfigError, match="JPEG store"):
        prepare(folder, tmp_path / "raw_store", RAW)
        H5ImageDataset(split_file(tmp_path / "raw_store", "val"), encoded=True)
