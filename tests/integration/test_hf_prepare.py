"""dataset=hf end to end: a Hugging Face dataset of real images -> prepare_dataset -> the store.

The datasets are built in the test from real images the repository carries: a few paintings
per style of ``data/demo/paintings`` (WikiArt) and a few AHE photographs per class of
``data/demo/images``, as ``save_to_disk`` folders and as Parquet files, with ClassLabel and
with string labels, with the dataset's own train/validation/test splits and with none. No
network, no data from outside the repository.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import h5py
import pandas as pd
import pytest

from arttl.data.build import StoreSettings, prepare_dataset
from arttl.data.sources.hf import read_hf
from arttl.data.store import SPLITS, split_file

datasets = pytest.importorskip(
    "datasets", reason="the hf extra is not installed: pip install 'arttl[hf]'"
)

from tests.fixtures.raw_datasets import HF_STORE_SPLIT, make_hf_dataset  # noqa: E402
from tests.fixtures.tiny_runs import read_store  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
PAINTINGS = REPO / "data" / "demo" / "paintings"
DEMO = REPO / "data" / "demo" / "images"
SETTINGS = StoreSettings(shorter_side=64, quality=90, seed=0)
IMAGES = {
    "paintings": (PAINTINGS, 7),  # every style
    "demo": (DEMO, 4),  # 4 of the 10 AHE classes keeps it quick
}


@pytest.fixture(autouse=True)
def _private_hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_home"))


def image_root(source: str) -> tuple[Path, int]:
    return IMAGES[source]


def prepare(ds, store: Path, **options):
    reader = functools.partial(read_hf, **{**ds.options, **options})
    return prepare_dataset(
        "hf", ds.challenge, ds.root, reader, store, SETTINGS, 1, False, {**ds.options, **options}
    )


@pytest.mark.parametrize("source", sorted(IMAGES))
@pytest.mark.parametrize("fmt", ["disk", "parquet"])
@pytest.mark.parametrize("labels", ["classlabel", "string"])
@pytest.mark.parametrize("given", [True, False], ids=["given-splits", "no-splits"])
def test_prepare_end_to_end(tmp_path: Path, source: str, fmt: str, labels: str, given: bool):
    folder, n_classes = image_root(source)
    ds = make_hf_dataset(
        tmp_path, folder, fmt=fmt, labels=labels, n_per_class=6, n_classes=n_classes,
        splits=("train", "validation", "test") if given else None,
    )  # fmt: skip
    store = tmp_path / "store"
    summary = prepare(ds, store)
    got = read_store(store)

    # class names: the ClassLabel names / the strings, i.e. the folder names
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir())[:n_classes]
    with h5py.File(split_file(store, "train"), "r") as f:
        assert [n.decode() for n in f["class_names"][()]] == classes
    assert summary["num_classes"] == n_classes

    # the corrupt row is rejected with its reason; every other image is stored
    rejected = summary["rejected"]
    assert len(rejected) == 1 and "not an image" in rejected["reason"].iloc[0]
    assert Path(rejected["path"].iloc[0]).parent.name == "train"
    assert len(got) == ds.n_rows - 1
    per_class = got["label"].value_counts().to_dict()
    assert per_class == {c: 6 for c in classes}

    counts = got["split"].value_counts().reindex(SPLITS).to_dict()
    assert summary["counts"] == counts
    if given:  # the dataset's own splits are kept, row by row
        expected = ds.split_counts.copy()
        expected["train"] -= 1  # the rejected corrupt image
        assert counts == expected == {"train": 4 * n_classes, "val": n_classes, "test": n_classes}
        for path, split in zip(got["path"], got["split"], strict=True):
            assert HF_STORE_SPLIT[Path(path).parent.name] == split
    else:  # one split: the store's stratified 80/10/10 (6 per class -> 4/1/1)
        assert counts == {"train": 4 * n_classes, "val": n_classes, "test": n_classes}

    # re-preparing writes no image again, so the source fingerprint and the store stay
    mtimes = {p: os.stat(p).st_mtime_ns for p in got["path"]}
    again = prepare(ds, store)
    assert again["reused"] is True
    assert {p: os.stat(p).st_mtime_ns for p in got["path"]} == mtimes


def test_train_and_test_only_gets_val_from_train(tmp_path: Path) -> None:
    folder, _ = image_root("demo")
    ds = make_hf_dataset(
        tmp_path, folder, fmt="parquet", splits=("train", "test"), n_per_class=6, n_classes=3,
        extras=False,
    )  # fmt: skip
    summary = prepare(ds, tmp_path / "store")
    got = read_store(tmp_path / "store")
    assert summary["counts"] == {"train": 12, "val": 3, "test": 3}
    test_rows = got[got["split"] == "test"]
    assert {Path(p).parent.name for p in test_rows["path"]} == {"test"}  # the dataset's test
    assert {Path(p).parent.name for p in got.loc[got["split"] == "val", "path"]} == {"train"}


def test_group_split_keeps_each_artist_in_one_split(tmp_path: Path) -> None:
    folder, _ = image_root("demo")
    ds = make_hf_dataset(tmp_path, folder, splits=None, n_per_class=8, n_classes=3, extras=False)
    settings = StoreSettings(shorter_side=64, seed=0, split_by="group")
    reader = functools.partial(read_hf, **ds.options)
    prepare_dataset("hf", ds.challenge, ds.root, reader, tmp_path / "s", settings, 1)
    splits = pd.read_csv(tmp_path / "s" / "splits.csv")
    assert (splits.groupby("group")["split"].nunique() == 1).all()


def test_cli_prepares_a_local_dataset(tmp_path: Path) -> None:
    folder, _ = image_root("demo")
    ds = make_hf_dataset(tmp_path, folder, n_per_class=6, n_classes=3)
    env = {**os.environ, "HF_DATASETS_CACHE": str(tmp_path / "hf_home"), "HF_HUB_OFFLINE": "1"}
    cmd = [
        sys.executable, "-m", "arttl.prepare", "dataset=hf", f"dataset.root={ds.root}",
        "dataset.challenge=style", f"paths.root_dir={tmp_path}", f"hydra.run.dir={tmp_path}/run",
        "num_workers=1",
    ]  # fmt: skip
    ok = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert ok.returncode == 0, ok.stderr
    cached = tmp_path / "data" / "cache" / "hf"
    assert {p.name for p in cached.glob("*/*")} == {"train", "validation", "test"}
    stores = list((tmp_path / "data" / "prepared").glob("hf_style__*/splits.csv"))
    assert len(stores) == 1 and len(pd.read_csv(stores[0])) == ds.n_rows - 1
    bad = subprocess.run(
        [*cmd[:5], "dataset.challenge=stlye", *cmd[6:]],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert bad.returncode == 2 and "did you mean style" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_a_hub_id_prepares_and_trains_config_check_passes(tmp_path: Path, monkeypatch) -> None:
    """A hub id is a valid dataset.root though it is no folder (prepare, train's config check,
    and the store folder name, which must not depend on the launch folder)."""
    from hydra import compose, initialize_config_dir

    from arttl.config import CONF_DIR, source_tag
    from arttl.config_schema import check_train_config as validate_config

    ds = make_hf_dataset(tmp_path / "raw", DEMO, n_per_class=4, n_classes=3, extras=False)
    monkeypatch.setattr(
        datasets, "load_dataset", lambda path, **kw: datasets.load_from_disk(str(ds.root))
    )
    hub = ds.__class__(**{**ds.__dict__, "root": "someone/paintings"})
    summary = prepare(hub, tmp_path / "store")
    assert summary["counts"]["train"] > 0
    assert read_store(tmp_path / "store")["label"].nunique() == 3
    monkeypatch.chdir(tmp_path)
    assert source_tag("someone/paintings") == source_tag("someone/paintings")
    assert "someone-paintings" in source_tag("someone/paintings")
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "train",
            [f"paths.root_dir={tmp_path}", f"run_dir={tmp_path}/run", "dataset=hf",
             "dataset.root=someone/paintings", f"dataset.challenge={ds.challenge}",
             "backbone.weights=none"],
        )  # fmt: skip
    validate_config(cfg)  # no "dataset.root does not exist"
