"""Hugging Face source: save_to_disk / Parquet / hub roots -> the source table, images as files."""

from __future__ import annotations

import inspect
import os
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from arttl.data.sources.hf import (
    MARKER,
    is_hub_id,
    non_path_root,
    read_hf,
)
from arttl.errors import ConfigError

datasets = pytest.importorskip(
    "datasets", reason="the hf extra is not installed: pip install 'arttl[hf]'"
)

from tests.fixtures.raw_datasets import (  # noqa: E402
    HF_STORE_SPLIT,
    READERS,
    SOURCES,
    make_hf_dataset,
    read_source,
)

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "data" / "demo" / "images"  # real photographs carried by the checkout
CONF = REPO / "conf" / "dataset"


@pytest.fixture(autouse=True)
def _private_hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`datasets` writes its own Arrow cache for Parquet sources: keep it out of $HOME."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_home"))


def small(tmp_path: Path, **kwargs) -> object:
    opts = {"n_per_class": 4, "n_classes": 3, **kwargs}
    return make_hf_dataset(tmp_path, DEMO, **opts)


def assert_table(df: pd.DataFrame) -> None:
    assert list(df.columns) == ["path", "label", "group", "split"]
    assert df["path"].is_unique and list(df["path"]) == sorted(df["path"])
    assert all(os.path.isabs(p) and os.path.isfile(p) for p in df["path"])
    assert all(isinstance(x, str) and x for x in df["label"])
    assert all(s in (None, "train", "val", "test") for s in df["split"])


# --------------------------------------------------------------------------- registry, roots


def test_registered_with_a_default_challenge_and_config_keys() -> None:
    from omegaconf import OmegaConf

    assert READERS["hf"] is read_hf and SOURCES["hf"].CHALLENGES == ("label",)
    params = inspect.signature(read_hf).parameters
    for name in ("hf", "hf_wikiart"):
        conf = OmegaConf.load(CONF / f"{name}.yaml")
        options = [k for k in conf.get("reader", {}) if not k.startswith("_")]
        assert all(k in params for k in options), options
    wikiart = OmegaConf.load(CONF / "hf_wikiart.yaml")
    assert wikiart.root == "huggan/wikiart" and wikiart.challenge == "style"
    assert OmegaConf.load(CONF / "hf.yaml").reader._target_ == "arttl.data.sources.hf.read_hf"


def test_hub_ids_globs_and_paths_are_told_apart(tmp_path: Path) -> None:
    assert is_hub_id("huggan/wikiart") and is_hub_id("mnist")
    assert not is_hub_id(str(tmp_path)) and not is_hub_id("./x") and not is_hub_id("a/b/c")
    assert non_path_root("huggan/wikiart") and non_path_root(str(tmp_path / "*.parquet"))
    assert not non_path_root(str(tmp_path)) and not non_path_root(str(tmp_path / "nope"))
    assert read_hf.non_path_root is non_path_root


# --------------------------------------------------------------------------- reading


@pytest.mark.parametrize("fmt", ["disk", "parquet"])
@pytest.mark.parametrize("labels", ["classlabel", "string"])
def test_given_splits_labels_groups_and_files(tmp_path: Path, fmt: str, labels: str) -> None:
    ds = small(tmp_path, fmt=fmt, labels=labels)
    df = ds.read()
    assert_table(df)
    assert Counter(df["label"]) == ds.counts
    assert sorted(df["label"].unique()) == ds.info["classes_in_order"]  # ClassLabel names
    assert df["split"].value_counts().to_dict() == ds.split_counts
    assert df.attrs["unmatched"] == {"missing_label": 1, "rows_without_image": 1}
    assert df.attrs["hf"]["kind"] == fmt and set(df.attrs["hf"]["splits"]) == set(HF_STORE_SPLIT)
    assert all(g.startswith(lab) for g, lab in zip(df["group"], df["label"], strict=True))
    cache = Path(ds.options["cache_dir"])
    for path, split in zip(
        df["path"], df["split"], strict=True
    ):  # <cache>/<key>/<split>/<row>.<ext>
        rel = Path(path).relative_to(cache)
        assert len(rel.parts) == 3 and HF_STORE_SPLIT[rel.parts[1]] == split
        assert rel.stem.isdigit() and rel.suffix == ".jpg"
    assert df.attrs["hf"]["cache"] == str(cache / Path(df["path"][0]).relative_to(cache).parts[0])


def test_image_files_hold_the_dataset_bytes(tmp_path: Path) -> None:
    ds = small(tmp_path, extras=False)
    df = ds.read()
    originals = {p.read_bytes() for c in ds.classes for p in (DEMO / c).iterdir()}
    assert all(Path(p).read_bytes() in originals for p in df["path"])


@pytest.mark.parametrize("fmt", ["disk", "parquet"])
def test_no_splits_leaves_the_split_to_the_store(tmp_path: Path, fmt: str) -> None:
    ds = small(tmp_path, fmt=fmt, splits=None)
    df = ds.read()
    assert df["split"].isna().all() and len(df) == ds.n_rows


def test_string_labels_stay_as_they_are(tmp_path: Path) -> None:
    root = tmp_path / "strings"
    img = next((DEMO / "altar").iterdir()).read_bytes()
    names = [" Art Nouveau (Modern)", "Baroque", "baroque", "", None]
    datasets.Dataset.from_dict(
        {"image": [{"bytes": img, "path": None}] * 5, "label": names},
        features=datasets.Features({"image": datasets.Image(), "label": datasets.Value("string")}),
    ).save_to_disk(str(root))
    df = read_hf(root, "label", cache_dir=tmp_path / "c")
    assert sorted(df["label"]) == [" Art Nouveau (Modern)", "Baroque", "baroque"]
    assert df.attrs["unmatched"]["missing_label"] == 2


def test_rereading_leaves_files_alone(tmp_path: Path) -> None:
    ds = small(tmp_path, splits=None, extras=False)
    first = ds.read()
    mtimes = {p: os.stat(p).st_mtime_ns for p in first["path"]}
    folder = Path(first["path"][0]).parent
    assert (folder / MARKER).is_file()  # the fingerprint the files were written from
    assert ds.read()["path"].tolist() == first["path"].tolist()
    (folder / MARKER).unlink()  # without it the files are compared byte by byte
    again = ds.read()
    assert {p: os.stat(p).st_mtime_ns for p in again["path"]} == mtimes


def test_changed_rows_are_rewritten_and_removed_rows_deleted(tmp_path: Path) -> None:
    img = [p.read_bytes() for p in sorted((DEMO / "altar").iterdir())[:3]]
    root = tmp_path / "d"
    features = datasets.Features({"image": datasets.Image(), "label": datasets.Value("string")})

    def save(images: list[bytes]) -> None:
        ds = datasets.Dataset.from_dict(
            {"image": [{"bytes": b, "path": None} for b in images], "label": ["a"] * len(images)},
            features=features,
        )
        ds.save_to_disk(str(tmp_path / "tmp_save"))
        if root.exists():
            import shutil

            shutil.rmtree(root)
        (tmp_path / "tmp_save").rename(root)

    save(img)
    before = read_hf(root, "label", cache_dir=tmp_path / "c")
    stamps = [os.stat(p).st_mtime_ns for p in before["path"]]
    save([img[0], img[2]])  # row 1 now holds another image, row 2 is gone
    after = read_hf(root, "label", cache_dir=tmp_path / "c")
    assert after["path"].tolist() == before["path"].tolist()[:2]
    assert os.stat(after["path"][0]).st_mtime_ns == stamps[0]
    assert Path(after["path"][1]).read_bytes() == img[2]
    assert not Path(before["path"][2]).exists()


def test_choosing_and_mapping_splits(tmp_path: Path) -> None:
    ds = small(tmp_path)
    train = read_source("hf", ds.root, ds.challenge, **ds.options, split="train")
    assert train["split"].isna().all()  # one split: the store splits it
    assert set(Path(p).parent.name for p in train["path"]) == {"train"}
    two = read_source("hf", ds.root, ds.challenge, **ds.options, split=["train", "validation"])
    assert set(two["split"]) == {"train", "val"}  # the store carves test out of train
    mapped = read_source(
        "hf", ds.root, ds.challenge, **ds.options, split={"train": "train", "test": "val"}
    )
    assert set(mapped["split"]) == {"train", "val"}


def test_train_and_test_only_get_val_carved_from_train(tmp_path: Path) -> None:
    ds = small(tmp_path, splits=("train", "test"), n_per_class=6, extras=False)
    df = ds.read()
    counts = df.groupby(["label", "split"]).size().unstack(fill_value=0)
    assert (
        (counts["test"] == 1).all() and (counts["val"] == 1).all() and (counts["train"] == 4).all()
    )
    assert ds.read()["split"].tolist() == df["split"].tolist()  # seeded, stable
    other = read_source("hf", ds.root, ds.challenge, **ds.options, seed=7)
    assert (other["split"] == "test").sum() == (df["split"] == "test").sum()


def test_drop_values_and_groups(tmp_path: Path) -> None:
    ds = small(tmp_path, labels="string", extras=False)
    first = ds.classes[0]
    df = read_source(
        "hf", ds.root, ds.challenge, **ds.options, drop=[first, f"{ds.classes[1]}-artist0"]
    )
    assert first not in set(df["label"])
    assert df.loc[df["label"] == ds.classes[1], "group"].isna().sum() == 2


def test_parquet_glob_infers_splits_from_file_names(tmp_path: Path) -> None:
    ds = small(tmp_path, fmt="parquet")
    df = read_hf(str(ds.root / "*.parquet"), ds.challenge, cache_dir=tmp_path / "c")
    assert df["split"].value_counts().to_dict() == ds.split_counts
    single = read_hf(
        str(ds.root / "test-00000-of-00001.parquet"), ds.challenge, cache_dir=tmp_path / "c"
    )
    assert single["split"].isna().all() and len(single) == ds.split_counts["test"]


def test_a_dataset_pointing_at_local_files_uses_them(tmp_path: Path) -> None:
    files = sorted((DEMO / "apse").iterdir())[:2]
    root = tmp_path / "paths"
    datasets.Dataset.from_dict(
        {"image": [str(f) for f in files], "label": ["apse", "apse"]},
        features=datasets.Features({"image": datasets.Image(), "label": datasets.Value("string")}),
    ).save_to_disk(str(root))
    df = read_hf(root, "label", cache_dir=tmp_path / "c")
    assert len(df) == 2  # save_to_disk embeds the bytes: written to the cache
    assert all(Path(p).is_relative_to(tmp_path / "c") for p in df["path"])


# --------------------------------------------------------------------------- bad input


def test_missing_label_column_lists_the_columns(tmp_path: Path) -> None:
    ds = small(tmp_path)
    with pytest.raises(ConfigError) as err:
        read_hf(ds.root, "stlye", **ds.options)
    msg = str(err.value)
    assert (
        "challenge='stlye'" in msg and "artist, style, title" in msg and "did you mean style" in msg
    )


def test_missing_or_wrong_image_column(tmp_path: Path) -> None:
    ds = small(tmp_path)
    with pytest.raises(ConfigError, match=r"image_column='img'.*artist, image, style, title"):
        read_hf(ds.root, ds.challenge, image_column="img", **ds.options)
    with pytest.raises(ConfigError, match=r"image_column='title' holds Value\(string\).*: image"):
        read_hf(ds.root, ds.challenge, image_column="title", **ds.options)
    with pytest.raises(ConfigError, match=r"group_column='painter'.*artist"):
        read_hf(ds.root, ds.challenge, **{**ds.options, "group_column": "painter"})


def test_missing_split_lists_the_splits(tmp_path: Path) -> None:
    ds = small(tmp_path)
    with pytest.raises(ConfigError) as err:
        read_hf(ds.root, ds.challenge, split="valid", **ds.options)
    assert "split='valid'" in str(err.value) and "test, train, validation" in str(err.value)
    with pytest.raises(ConfigError, match="'test' maps to 'holdout'"):
        read_hf(ds.root, ds.challenge, split={"test": "holdout"}, **ds.options)
    with pytest.raises(ConfigError, match="no train split"):
        read_hf(ds.root, ds.challenge, split=["validation", "test"], **ds.options)


def test_unknown_split_names_must_be_chosen_or_mapped(tmp_path: Path) -> None:
    root = tmp_path / "odd"
    img = next((DEMO / "altar").iterdir()).read_bytes()
    features = datasets.Features({"image": datasets.Image(), "label": datasets.Value("string")})
    part = datasets.Dataset.from_dict(
        {"image": [{"bytes": img, "path": None}] * 2, "label": ["a", "b"]}, features=features
    )
    datasets.DatasetDict({"train": part, "unlabeled": part}).save_to_disk(str(root))
    with pytest.raises(ConfigError, match=r"'unlabeled'.*split='\{unlabeled: train\}'"):
        read_hf(root, "label", cache_dir=tmp_path / "c")
    assert len(read_hf(root, "label", cache_dir=tmp_path / "c", split="train")) == 2


def test_a_file_that_is_not_parquet(tmp_path: Path) -> None:
    ds = small(tmp_path, fmt="parquet")
    (ds.root / "validation-00000-of-00001.parquet").write_bytes(b"PAR1 but not really")
    with pytest.raises(
        ConfigError, match=r"validation-00000-of-00001\.parquet' is not a Parquet file"
    ):
        read_hf(ds.root, ds.challenge, **ds.options)


def test_roots_that_are_nothing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"root=.*nowhere.*does not exist"):
        read_hf(tmp_path / "nowhere", "label")
    with pytest.raises(ConfigError, match="matches no file"):
        read_hf(str(tmp_path / "*.parquet"), "label")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "a.jpg").write_bytes(b"x")
    with pytest.raises(ConfigError, match=r"neither a datasets save_to_disk folder.*imagefolder"):
        read_hf(tmp_path / "folder", "label")


def test_offline_without_a_cache(tmp_path: Path, monkeypatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "empty_cache"))
    with pytest.raises(ConfigError) as err:
        read_hf("arttl-tests/no-such-dataset", "label", cache_dir=tmp_path / "c")
    msg = str(err.value)
    assert "offline mode is on" in msg and "not in the local datasets cache" in msg


def test_a_hub_id_that_does_not_exist(tmp_path: Path, monkeypatch) -> None:
    from datasets.exceptions import DatasetNotFoundError

    # "online" (the suite runs offline, tests/conftest.py); load_dataset is replaced below, so
    # nothing is fetched: these are the answers an online machine gets.
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)

    def not_found(path, **kwargs):  # what the Hub answers for an unknown id (no network in tests)
        raise DatasetNotFoundError(
            f"Dataset '{path}' doesn't exist on the Hub or cannot be accessed."
        )

    monkeypatch.setattr(datasets, "load_dataset", not_found)
    with pytest.raises(
        ConfigError, match=r"'arttl-tests/nope' is not a dataset on the Hugging Face Hub"
    ):
        read_hf("arttl-tests/nope", "label", cache_dir=tmp_path / "c")

    def unreachable(path, **kwargs):
        raise ConnectionError(f"Couldn't reach '{path}' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    with pytest.raises(ConfigError, match="the Hub cannot be reached and the dataset is not in"):
        read_hf("arttl-tests/nope", "label", cache_dir=tmp_path / "c")


def test_hub_datasets_are_read_like_local_ones(tmp_path: Path, monkeypatch) -> None:
    ds = small(tmp_path)
    calls = []

    def from_hub(path, name=None, revision=None, **kwargs):  # a hub dataset already downloaded
        calls.append((path, name, revision))
        return datasets.load_from_disk(str(ds.root))

    monkeypatch.setattr(datasets, "load_dataset", from_hub)
    df = read_hf("someone/paintings", ds.challenge, revision="v1", cache_dir=tmp_path / "c")
    assert calls == [("someone/paintings", None, "v1")]
    assert Counter(df["label"]) == ds.counts
    assert {Path(p).parts[-3] for p in df["path"]} == {"someone--paintings@v1"}
