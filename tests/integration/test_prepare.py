"""prepare -> store on tiny raw datasets of every layout, bad images, the real AHE folder, the CLI."""

from __future__ import annotations

import functools
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from torch.utils.data import DataLoader

from arttl.config import CONF_DIR
from arttl.data import build
from arttl.data.build import StoreSettings, prepare_dataset, store_is_current
from arttl.data.config import prepare_from_config
from arttl.data.store import SPLITS, H5ImageDataset, read_attrs, split_file
from arttl.errors import ConfigError
from tests.fixtures.bad_images import make_bad_image_zoo
from tests.fixtures.raw_datasets import (
    ALL_BUILDERS,
    READERS,
    make_imagefolder,
)
from tests.fixtures.real_data import EXCERPTS, check_prepares_every_image
from tests.fixtures.tiny_runs import read_store

SETTINGS = StoreSettings(shorter_side=None, quality=90, seed=0)


def prepare(ds, store: Path, workers: int = 1, settings: StoreSettings = SETTINGS, force=False):
    reader = functools.partial(READERS[ds.source], **ds.options)
    return prepare_dataset(
        ds.source, ds.challenge, ds.root, reader, store, settings, workers, force, ds.options
    )


BUILDERS = ALL_BUILDERS  # every raw layout the fixtures can build, the CSV table included


@pytest.mark.parametrize("layout", sorted(BUILDERS))
def test_every_layout_prepares_a_consistent_store(tmp_path, layout):
    ds = BUILDERS[layout](tmp_path)
    summary = prepare(ds, tmp_path / "store")
    store = tmp_path / "store"
    got = read_store(store)
    manifest = pd.read_csv(store / "splits.csv")
    assert sorted(got["path"]) == sorted(manifest["path"])
    merged = got.merge(manifest, on="path", suffixes=("", "_csv"))
    assert (merged["label"] == merged["label_csv"]).all()
    assert (merged["split"] == merged["split_csv"]).all()
    assert got["path"].is_unique
    assert sorted(got["label"].unique()) == ds.classes
    for label in ds.classes:  # every kept class is in every split
        assert set(got.loc[got["label"] == label, "split"]) == set(SPLITS)
    assert len(got) == ds.n_rows
    attrs = read_attrs(split_file(store, "train"))
    assert attrs["challenge"] == ds.challenge and attrs["complete"]
    assert attrs["source"] == ds.source
    assert attrs["arttl_version"] and attrs["config_hash"] and attrs["seed"] == 0
    assert summary["counts"] == got["split"].value_counts().reindex(SPLITS).to_dict()


def test_images_are_stored_at_the_configured_shorter_side(tmp_path):
    ds = make_imagefolder(tmp_path, n_per_class=6, size=(90, 60))
    prepare(ds, tmp_path / "store", settings=StoreSettings(shorter_side=40, quality=90, seed=0))
    data = H5ImageDataset(split_file(tmp_path / "store", "train"))
    assert {data[i][0].size for i in range(len(data))} == {(60, 40)}  # 90x60 -> 60x40


def test_bad_images_are_rejected_with_reasons_and_the_rest_is_kept(tmp_path):
    ds = make_imagefolder(tmp_path, n_per_class=10)
    expected = make_bad_image_zoo(ds.root / "altar")
    summary = prepare(ds, tmp_path / "store")
    rejected = pd.read_csv(tmp_path / "store" / "rejected.csv")
    by_name = {Path(p).name: r for p, r in zip(rejected["path"], rejected["reason"], strict=True)}
    as_root = os.geteuid() == 0  # root reads chmod-000 files: that one is then a good image
    checked = 0
    for name, reason in expected.items():
        path = ds.root / "altar" / name
        if path.is_file() and not (as_root and reason.startswith("unreadable")):
            assert name in by_name, f"{name} was not rejected"
            assert reason in by_name[name]
            checked += 1
    assert checked >= 5
    stored = read_store(tmp_path / "store")
    assert not set(by_name) & {Path(p).name for p in stored["path"]}
    assert len(stored) == ds.n_rows + (1 if as_root else 0)
    assert len(summary["rejected"]) == len(rejected)


def test_store_round_trip_with_two_workers(tmp_path):
    ds = make_imagefolder(tmp_path, n_per_class=12)
    prepare(ds, tmp_path / "store")
    manifest = pd.read_csv(tmp_path / "store" / "splits.csv").set_index("path")
    for split in SPLITS:
        data = H5ImageDataset(split_file(tmp_path / "store", split), transform=np.asarray)
        paths = data.paths()
        loader = DataLoader(data, batch_size=4, num_workers=2)
        labels = np.concatenate([y.numpy() for _, y in loader])
        assert [data.class_names[y] for y in labels] == manifest.loc[paths, "label"].tolist()
        assert (manifest.loc[paths, "split"] == split).all()
        image, _ = data[0]
        assert image.dtype == np.uint8 and image.shape[2] == 3


def test_store_files_are_opened_lazily_once_per_process(tmp_path):
    ds = make_imagefolder(tmp_path, n_per_class=6)
    prepare(ds, tmp_path / "store")
    data = H5ImageDataset(split_file(tmp_path / "store", "train"))
    assert data._file is None  # construction reads metadata only, with the file closed again
    data[0]
    assert data._file is not None and data._file.id.valid
    worker_copy = pickle.loads(pickle.dumps(data))  # what a DataLoader worker receives
    assert worker_copy._file is None
    assert worker_copy[0][1] == data[0][1]


def test_worker_count_does_not_change_the_store(tmp_path):
    ds = make_imagefolder(tmp_path, n_per_class=10)
    prepare(ds, tmp_path / "one", workers=1)
    prepare(ds, tmp_path / "two", workers=2)
    for split in SPLITS:
        one = split_file(tmp_path / "one", split).read_bytes()
        two = split_file(tmp_path / "two", split).read_bytes()
        assert one == two


def test_max_per_class_prepares_a_seeded_subset_and_a_change_rebuilds(tmp_path):
    ds = make_imagefolder(tmp_path, n_per_class=12)
    store = tmp_path / "store"
    capped = StoreSettings(shorter_side=None, seed=0, max_per_class=8, fractions=(0.5, 0.25, 0.25))
    summary = prepare(ds, store, settings=capped)
    assert summary["capped_rows"] == 3 * 4 and sum(summary["counts"].values()) == 3 * 8
    stored = pd.read_csv(store / "splits.csv")
    assert stored["label"].value_counts().to_dict() == {c: 8 for c in ds.classes}
    assert json.loads(read_attrs(split_file(store, "train"))["settings"])["max_per_class"] == 8
    assert prepare(ds, store, settings=capped)["reused"] is True
    rebuilt = prepare(ds, store, settings=SETTINGS)
    assert rebuilt["reused"] is False and "max_per_class" in rebuilt["rebuilt_because"]
    assert sum(rebuilt["counts"].values()) == 3 * 12


def test_rerun_reuses_and_force_rebuilds(tmp_path):
    ds = make_imagefolder(tmp_path)
    store = tmp_path / "store"
    assert prepare(ds, store)["reused"] is False
    assert prepare(ds, store)["reused"] is True
    assert prepare(ds, store, force=True)["reused"] is False
    other = StoreSettings(shorter_side=None, quality=70, seed=0)
    assert prepare(ds, store, settings=other)["reused"] is False


def test_interrupted_prepare_leaves_no_store_that_looks_complete(tmp_path, monkeypatch):
    ds = make_imagefolder(tmp_path)
    store = tmp_path / "store"
    real = build.write_split

    def crash_on_test(path, *args, **kwargs):
        if Path(path).name == "test.h5":
            raise KeyboardInterrupt("killed")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(build, "write_split", crash_on_test)
    with pytest.raises(KeyboardInterrupt):
        prepare(ds, store)
    assert not store.exists()
    monkeypatch.setattr(build, "write_split", real)
    assert prepare(ds, store)["reused"] is False
    assert store_is_current(store, read_attrs(split_file(store, "val"))["config_hash"])


def test_fewer_than_two_classes_fails_before_any_decoding(tmp_path, monkeypatch):
    def no_decoding(*args, **kwargs):
        raise AssertionError("images were decoded before the class check")

    monkeypatch.setattr(build, "decode_all", no_decoding)
    with pytest.raises(ConfigError, match=r"only 1 class\(es\) left.*at least 2 are needed"):
        prepare(make_imagefolder(tmp_path, classes=("altar",)), tmp_path / "store")
    # two classes, but one too small for every split: dropped, which again leaves one
    ds = make_imagefolder(tmp_path / "b", n_per_class=10, classes=("altar", "apse"))
    for path in sorted((ds.root / "apse").iterdir())[2:]:
        path.unlink()
    with pytest.raises(ConfigError, match=r"only 1 class\(es\) left"):
        prepare(ds, tmp_path / "store2")
    assert not (tmp_path / "store").exists() and not (tmp_path / "store2").exists()


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "arttl.prepare", *args], capture_output=True, text=True, timeout=300
    )


def test_cli_prepares_and_reports_bad_input(tmp_path):
    ds = make_imagefolder(tmp_path)
    common = [f"paths.root_dir={tmp_path}", f"hydra.run.dir={tmp_path}/run"]
    ok = run_cli("dataset=imagefolder", f"dataset.root={ds.root}", *common)
    assert ok.returncode == 0, ok.stderr
    stores = list((tmp_path / "data" / "prepared").glob("imagefolder_class__*/train.h5"))
    assert len(stores) == 1 and stores[0].parent.name.startswith(
        f"imagefolder_class__{tmp_path.name}-imagefolder-"
    )
    missing = run_cli("dataset=imagefolder", f"dataset.root={tmp_path}/nope", *common)
    assert missing.returncode == 2 and "dataset.root" in missing.stderr
    assert "Traceback" not in missing.stderr
    challenge = run_cli(
        "dataset=pandora18k", f"dataset.root={ds.root}", "dataset.challenge=x", *common
    )
    assert challenge.returncode == 2 and "movement" in challenge.stderr
    unknown = run_cli("dataset=louvre", *common)
    assert unknown.returncode != 0 and "imagefolder" in unknown.stderr


def test_real_ahe_excerpt_prepares_every_image(tmp_path):
    """Real AHE files whose names and bytes are awkward (see tests/data/README.md)."""
    check_prepares_every_image(EXCERPTS / "ahe_excerpt", tmp_path, n_files=60, n_classes=6)


DEMO = Path(__file__).resolve().parents[2] / "data" / "demo" / "images"


def test_group_split_and_duplicates_from_prepare(tmp_path):
    """Real photos in <class>/<group>/<image> folders, plus exact duplicates across groups."""
    import shutil

    root = tmp_path / "raw"
    for cls in ("altar", "apse", "vault"):
        for i, src in enumerate(sorted((DEMO / cls).iterdir())[:40]):
            dst = root / cls / f"{cls}_g{i // 5}" / src.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst)
    original = sorted((root / "altar" / "altar_g0").iterdir())[0]
    shutil.copy(original, root / "altar" / "altar_g3" / "copy.jpg")  # same class, other group
    shutil.copy(original, root / "apse" / "apse_g1" / "copy.jpg")  # other class too
    reader = READERS["imagefolder"]
    settings = StoreSettings(shorter_side=None, seed=3, split_by="group")
    summary = prepare_dataset("imagefolder", "class", root, reader, tmp_path / "s", settings)
    splits = pd.read_csv(tmp_path / "s" / "splits.csv")
    assert splits.groupby("group")["split"].nunique().max() == 1  # no group in two splits
    assert set(splits["split"]) == {"train", "val", "test"}
    dups = pd.read_csv(tmp_path / "s" / "duplicates.csv")
    assert len(dups) == 3 and dups["cluster"].nunique() == 1 and dups["split"].nunique() == 1
    assert len(summary["duplicates"]) == 3
    assert read_attrs(split_file(tmp_path / "s", "train"))["duplicate_images"] == 3
    # the same photos stratified by label keep the duplicates together too
    by_label = StoreSettings(shorter_side=None, seed=3)
    prepare_dataset("imagefolder", "class", root, reader, tmp_path / "l", by_label)
    dups = pd.read_csv(tmp_path / "l" / "duplicates.csv")
    assert dups["split"].nunique() == 1
    assert pd.read_csv(tmp_path / "l" / "splits.csv").groupby("group")["split"].nunique().max() > 1


def test_group_split_without_groups_is_a_clear_error(tmp_path):
    ds = make_imagefolder(tmp_path)  # flat <class>/<image>: no group
    settings = StoreSettings(shorter_side=None, split_by="group")
    with pytest.raises(ConfigError, match=r"dataset 'imagefolder' \(root .*\): .*group_regex"):
        prepare(ds, tmp_path / "store", settings=settings)


def _prepare_in_process(args: tuple) -> bool:
    ds, store = args
    return bool(prepare(ds, store)["reused"])


def test_parallel_jobs_building_one_store_wait_and_reuse_it(tmp_path):
    """A parallel sweep (submitit local, joblib) starts several jobs that need the same store:
    one builds it, the others wait for it and reuse it; none fails renaming over it."""
    import multiprocessing as mp

    ds = make_imagefolder(tmp_path / "raw", n_per_class=8)
    store = tmp_path / "store"
    with mp.get_context("fork").Pool(3) as pool:
        reused = pool.map(_prepare_in_process, [(ds, store)] * 3)
    assert sorted(reused) == [False, True, True]
    assert store_is_current(store, read_attrs(split_file(store, "train"))["config_hash"])


def test_prepare_takes_an_experiment_preset_and_builds_the_store_train_uses(tmp_path):
    """``python -m arttl.prepare +experiment=<preset>`` (presets choose a backbone and mode,
    which prepare does not read) builds exactly the store that training with it reuses."""
    small = [f"paths.root_dir={tmp_path}", "store.max_per_class=10", "num_workers=1"]
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        for preset in ("demo", "demo_paintings", "study_met"):  # each overrides /mode too
            compose("prepare", overrides=[f"+experiment={preset}", *small])
        prep = compose("prepare", overrides=["+experiment=demo_objects", *small])
        train = compose("train", overrides=["+experiment=demo_objects", *small])
    built = prepare_from_config(prep)
    assert not built["reused"] and built["store"] == str(train.store.dir)
    assert sum(built["counts"].values()) == 50  # 5 types x 10
    assert prepare_from_config(train)["reused"]  # train finds it current: same identity
