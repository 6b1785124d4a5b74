"""Multi-task stores: one store, one label column per task, missing labels masked (issue 14)."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from arttl.data.build import StoreSettings, prepare_dataset, settings_dict
from arttl.data.sources.csvtable import read_csv_table
from arttl.data.store import SPLITS, H5ImageDataset, read_attrs, read_task_classes, split_file
from arttl.data.tasks import apply_label_map, compile_label_map
from arttl.errors import ConfigError
from tests.fixtures.raw_datasets import make_multitask_metadata

SETTINGS = StoreSettings(shorter_side=None, fractions=(0.5, 0.25, 0.25), seed=0)
TASKS = ["type", "material", "period"]
COLUMNS = {"type": "Classification", "material": "Medium", "period": "Period"}
MATERIAL_MAP = {"faience": "faience", "stone|lime": "stone", "bronze|copper": "metal"}


def prepare(raw, store: Path, challenge=TASKS, label_map=None, settings=SETTINGS, **reader):
    options = {**raw.options, **reader}
    fn = functools.partial(read_csv_table, **options)
    recorded = {**options, **({"label_map": label_map} if label_map else {})}
    return prepare_dataset("egypt", challenge, raw.root, fn, store, settings, 1, False, recorded)


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    return make_multitask_metadata(tmp_path_factory.mktemp("mt"))


@pytest.fixture(scope="module")
def store(raw, tmp_path_factory):
    out = tmp_path_factory.mktemp("store") / "store"
    prepare(raw, out, label_map={"material": MATERIAL_MAP})
    return out


def expected_label(row: dict, task: str) -> str | None:
    value = row[COLUMNS[task]].strip()
    if task == "material":
        return compile_label_map(task, MATERIAL_MAP)(value) if value else None
    return value or None


def test_store_round_trip_keeps_every_label_an_image_has_and_masks_the_rest(raw, store):
    fields = {f"train_val/{r['Classification']}/{r['ID']}.jpg": r for r in raw.info["fields"]}
    classes = read_task_classes(split_file(store, "train"))
    assert list(classes) == TASKS
    assert classes["material"] == ["faience", "metal", "stone"]
    assert classes["period"] == ["Late Period", "New Kingdom"]
    seen, missing = 0, dict.fromkeys(TASKS, 0)
    for split in SPLITS:
        ds = H5ImageDataset(split_file(store, split))
        assert ds.labels.shape == (len(ds), 3) and ds.labels.dtype == np.int64
        for path, labels in zip(ds.paths(), ds.labels, strict=True):
            row = fields[path.split("/multitask/", 1)[1]]
            for t, task in enumerate(TASKS):
                want = expected_label(row, task)
                got = None if labels[t] < 0 else classes[task][labels[t]]
                assert got == want, (path, task)
                missing[task] += got is None
            seen += 1
    assert seen == len(fields)  # every image has its type: none is rejected
    assert missing["type"] == 0 and missing["material"] > 0 and missing["period"] > 0
    attrs = read_attrs(split_file(store, "train"))
    assert attrs["challenge"] == "type+material+period"
    assert json.loads(attrs["tasks"]) == TASKS
    manifest = pd.read_csv(store / "splits.csv", keep_default_na=False)
    assert {"task:type", "task:material", "task:period"} <= set(manifest.columns)
    for task in TASKS:  # class names, empty where the image has none
        assert set(manifest[f"task:{task}"]) <= {*classes[task], ""}
    assert (manifest["task:material"] == "").sum() == missing["material"]


def test_a_dataset_selects_tasks_by_name_and_refuses_unknown_ones(store):
    path = split_file(store, "val")
    full = H5ImageDataset(path)
    sub = H5ImageDataset(path, tasks=["period", "type"])
    assert list(sub.task_classes) == ["period", "type"]
    assert np.array_equal(sub.labels, full.labels[:, [2, 0]])
    _, label = sub[0]
    assert label.tolist() == full.labels[0, [2, 0]].tolist()
    with pytest.raises(ConfigError, match=r"no task 'artist'.*\['type', 'material', 'period'\]"):
        H5ImageDataset(path, tasks=["artist"])


def test_images_with_no_label_for_any_task_are_rejected_with_their_reason(raw, tmp_path):
    out = tmp_path / "store"
    # only bronze/copper objects keep a material; the period map keeps only "Late Period"
    maps = {
        "material": {"bronze": "bronze", "faience": "faience"},
        "period": {"late": "late", "new": "new"},
    }
    summary = prepare(raw, out, challenge=["material", "period"], label_map=maps)
    rejected = pd.read_csv(out / "rejected.csv")
    fields = raw.info["fields"]
    none = [
        r
        for r in fields
        if not r["Period"] and r["Medium"] in ("", "limestone with traces of paint")
    ]
    assert len(rejected) == len(none) > 0
    assert rejected["reason"].str.contains("no label for any task").all()
    assert summary["tasks"]["material"]["classes"] == 2


def test_stratify_on_changes_the_split_and_is_part_of_the_store_identity(raw, tmp_path):
    a = prepare(raw, tmp_path / "a")
    other = StoreSettings(**{**SETTINGS.__dict__, "stratify_on": "period"})
    b = prepare(raw, tmp_path / "b", settings=other)
    assert (
        read_attrs(split_file(tmp_path / "a", "train"))["settings_hash"]
        != read_attrs(split_file(tmp_path / "b", "train"))["settings_hash"]
    )
    assert a["counts"] != b["counts"] or not (
        pd.read_csv(tmp_path / "a" / "splits.csv")["split"].equals(
            pd.read_csv(tmp_path / "b" / "splits.csv")["split"]
        )
    )
    assert "stratify_on" not in settings_dict(SETTINGS)  # unset: old store hashes unchanged
    with pytest.raises(ConfigError, match=r"store\.stratify_on='artist' is not one of"):
        prepare(
            raw,
            tmp_path / "c",
            settings=StoreSettings(**{**SETTINGS.__dict__, "stratify_on": "artist"}),
        )


def test_unknown_task_lists_the_tasks_the_source_has(raw, tmp_path):
    with pytest.raises(ConfigError, match=r"challenge='artist'.*material, period, type"):
        prepare(raw, tmp_path / "s", challenge=["type", "artist"])


def test_a_label_map_leaving_fewer_than_two_classes_is_an_error(raw, tmp_path):
    with pytest.raises(
        ConfigError, match=r"label_map.material leaves task 'material' with 1 class"
    ):
        prepare(raw, tmp_path / "s", label_map={"material": {"faience": "glazed"}})
    with pytest.raises(ConfigError, match="is not one of this run's tasks"):
        prepare(raw, tmp_path / "s", label_map={"artist": "first_word"})
    with pytest.raises(ConfigError, match="is not a regular expression"):
        prepare(raw, tmp_path / "s", label_map={"material": {"(unclosed": "x"}})


def test_a_task_with_no_label_in_one_split_is_an_error_before_training(raw, tmp_path):
    # period labelled only on a handful of images: the val/test splits cannot all have both eras
    table = pd.read_csv(raw.root / "metadata.csv", dtype=str, keep_default_na=False)
    keep = table.index[table["Period"] != ""][:2]
    table.loc[~table.index.isin(keep), "Period"] = ""
    table.to_csv(tmp_path / "few.csv", index=False)
    with pytest.raises(
        ConfigError, match=r"task 'period' keeps \d class\(es\) present in every split"
    ):
        prepare(raw, tmp_path / "s", csv_path=str(tmp_path / "few.csv"))


def test_first_word_map():
    labels = pd.Series(
        ["Limestone with traces of paint", "faience", "  Bronze, solid cast", "1920"]
    )
    out = apply_label_map("material", labels, "first_word")
    assert out.tolist()[:3] == ["limestone", "faience", "bronze"] and out.isna().tolist()[3]


def test_single_task_stores_are_unchanged_by_the_task_machinery(raw, tmp_path):
    prepare(raw, tmp_path / "one", challenge="type")
    with h5py.File(split_file(tmp_path / "one", "train")) as f:
        assert f["labels"].ndim == 1 and "tasks" not in f.attrs and "task_class_names" not in f
    assert read_task_classes(split_file(tmp_path / "one", "train")) is None


def test_rijksmuseum_material_type_artist_in_one_store(tmp_path):
    from arttl.data.sources.rijksmuseum import read_rijksmuseum
    from tests.fixtures.raw_datasets import make_rijks_csv

    raw = make_rijks_csv(tmp_path, challenge="material")
    tasks = ["material", "type", "artist"]
    out = tmp_path / "store"
    summary = prepare_dataset(
        "rijksmuseum", tasks, raw.root, read_rijksmuseum, out, SETTINGS, 1, False, {}
    )
    # the anonymous object with empty material and type has no label at all: rejected by name
    rejected = pd.read_csv(out / "rejected.csv")
    assert len(rejected) == 1 and "_BK-NM-" in rejected["path"].iloc[0]
    assert "no label for any task (material, type, artist)" in rejected["reason"].iloc[0]
    # the anonymous objects keep material and type, their artist is masked
    labels = np.concatenate([H5ImageDataset(split_file(out, s)).labels for s in SPLITS])
    assert labels.shape[1] == 3 and (labels[:, :2] >= 0).all()
    assert (labels[:, 2] < 0).sum() == 3 * 2
    assert summary["tasks"]["artist"]["classes"] == 3


def test_gpu_decode_batches_keep_one_label_per_task(store):
    """data.gpu_decode reads JPEG bytes and collates them itself: labels stay (batch, tasks)."""
    from arttl.data.transforms import collate_encoded

    ds = H5ImageDataset(split_file(store, "train"), encoded=True)
    encoded, labels = collate_encoded([ds[i] for i in range(4)])
    assert len(encoded) == 4 and labels.shape == (4, 3) and labels.dtype.is_signed
    assert labels.tolist() == ds.labels[:4].tolist()
