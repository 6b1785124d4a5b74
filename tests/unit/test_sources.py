"""Source readers: every raw layout -> (path, label, group, split), matched by id, never by row."""

from __future__ import annotations

import inspect
import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from arttl.data.sources import pandora18k, rijksmuseum
from arttl.data.sources.antwerp import read_antwerp
from arttl.data.sources.csvtable import read_csv_table
from arttl.data.sources.imagefolder import read_imagefolder
from arttl.data.sources.pandora18k import read_pandora18k
from arttl.data.sources.rijksmuseum import parse_dc_record, read_rijksmuseum
from arttl.data.sources.wikiart import parse_artgan_lists, read_wikiart
from arttl.errors import ConfigError
from tests.fixtures.raw_datasets import (
    ANTWERP_CLASSES,
    ANTWERP_OPTIONS,
    READERS,
    RIJKS_CSV_CLASSES,
    RIJKS_XML_CLASSES,
    SOURCES,
    class_colour,
    make_antwerp,
    make_csv_table,
    make_imagefolder,
    make_museum_metadata,
    make_pandora,
    make_rijks_csv,
    make_rijks_release,
    make_rijks_xml,
    make_wikiart_lists,
    make_wikiart_rasta,
    read_source,
    write_image,
)
from tests.fixtures.real_data import EXCERPTS

AHE = EXCERPTS / "ahe_excerpt"
ARTGAN = EXCERPTS / "wikiart_artgan_excerpt"
RIJKS_EXAMPLE = EXCERPTS / "rijksmuseum_example_metadata.csv"


def assert_table(df: pd.DataFrame) -> None:
    """The source-table contract every reader must keep."""
    assert list(df.columns) == ["path", "label", "group", "split"]
    assert df["path"].is_unique
    assert all(os.path.isabs(p) and os.path.isfile(p) for p in df["path"])
    assert all(isinstance(x, str) and x for x in df["label"])
    assert all(g is None or isinstance(g, str) for g in df["group"])
    assert all(s in (None, "train", "val", "test") for s in df["split"])
    assert list(df["path"]) == sorted(df["path"])


def colour_class(path: str, n_classes: int) -> int:
    """Which class colour an image was drawn with: an independent check of the label."""
    mean = np.asarray(Image.open(path).convert("RGB"), dtype=float).mean(axis=(0, 1))
    dists = [np.linalg.norm(mean - np.array(class_colour(i))) for i in range(n_classes)]
    return int(np.argmin(dists))


# --------------------------------------------------------------------------- registry


def test_every_dataset_config_names_a_reader_these_tests_cover() -> None:
    from omegaconf import OmegaConf

    conf = Path(__file__).resolve().parents[2] / "conf" / "dataset"
    targets = {OmegaConf.load(p).get("reader", {}).get("_target_") for p in conf.glob("*.yaml")}
    covered = {f"{f.__module__}.{f.__name__}" for f in READERS.values()}
    assert targets - {None} <= covered
    assert READERS["wikiart"] is read_wikiart
    assert rijksmuseum.CHALLENGES == ("material", "type", "artist")
    assert pandora18k.CHALLENGES == ("movement", "artist")
    for name, module in SOURCES.items():
        assert READERS[name].__module__ == module.__name__
        assert isinstance(module.CHALLENGES, tuple) and module.CHALLENGES


@pytest.mark.parametrize(
    ("source", "builder", "choices"),
    [
        ("imagefolder", make_imagefolder, "class"),
        ("rijksmuseum", make_rijks_csv, "artist, material, type"),
        ("antwerp", make_antwerp, "artist, type"),
        ("pandora18k", make_pandora, "artist, movement"),
        ("wikiart", make_wikiart_lists, "artist, genre, style"),
    ],
)
def test_unknown_challenge_lists_valid_choices(tmp_path, source, builder, choices) -> None:
    ds = builder(tmp_path, n_per_class=2)
    with pytest.raises(ConfigError) as err:
        read_source(source, ds.root, "colour", **ds.options)
    assert "challenge='colour'" in str(err.value)
    assert choices in str(err.value)


@pytest.mark.parametrize("source", sorted(READERS))
def test_missing_root_names_the_key(tmp_path: Path, source: str) -> None:
    challenge = SOURCES[source].CHALLENGES[0]
    with pytest.raises(ConfigError, match=r"root=.*does not exist"):
        read_source(source, tmp_path / "nowhere", challenge)


# --------------------------------------------------------------------------- imagefolder


def test_imagefolder_builder_reads_back(tmp_path: Path) -> None:
    ds = make_imagefolder(tmp_path)
    df = ds.read()
    assert_table(df)
    assert Counter(df["label"]) == ds.counts
    assert df["group"].isna().all() and df["split"].isna().all()
    assert any("(" in p and "é" in p for p in df["path"])
    classes = ds.classes
    assert all(classes[colour_class(p, 3)] == lab for p, lab in zip(df.path, df.label, strict=True))


def test_imagefolder_keeps_unknown_files_for_the_decoder_but_skips_hidden_and_text(
    tmp_path: Path,
) -> None:
    ds = make_imagefolder(tmp_path, n_per_class=3, extras=True)
    df = read_imagefolder(ds.root)
    names = {Path(p).name for p in df["path"]}
    assert Counter(df["label"]) == ds.counts
    assert ds.info["broken"] in set(df["path"])  # rejected later, with a reason
    assert "UPPER.PNG" in names
    assert not names & {".hidden.jpg", "notes.txt", "README.md", "x.jpg"}
    only_jpg = read_imagefolder(ds.root, extensions=["JPG"])
    assert "UPPER.PNG" not in {Path(p).name for p in only_jpg["path"]}
    assert len(only_jpg) == len(df) - 1


def test_imagefolder_on_real_ahe_names_matches_the_disk() -> None:
    """Real AHE names: mojibake, parentheses, a comma, one photograph in two class folders."""
    df = read_imagefolder(AHE)
    on_disk = {d: len(os.listdir(AHE / d)) for d in os.listdir(AHE)}
    assert len(df) == sum(on_disk.values()) == 60
    assert dict(Counter(df["label"])) == on_disk
    assert df["path"].is_unique
    names = [Path(p).name for p in df["path"]]
    assert sum(not n.isascii() for n in names) == 6  # 3 in apse, 3 in flying_buttress
    assert any("(" in n for n in names) and any("," in n for n in names)
    assert all(os.path.isfile(p) for p in df["path"])


def artist_folder(root: Path, n_artists: int = 4, per_artist: int = 3) -> Path:
    """``<class>/<artist>_<nnnn>.jpg`` plus one file no artist regex matches."""
    for a in range(n_artists):
        cls = ("portrait", "landscape")[a % 2]
        for i in range(per_artist):
            write_image(root / cls / f"artist{a}_{i:04d}.jpg", a % 2, seed=a * 10 + i)
    write_image(root / "portrait" / "untitled.jpg", 0)
    return root


def test_imagefolder_group_regex_takes_the_first_capture_group(tmp_path: Path) -> None:
    root = artist_folder(tmp_path / "art")
    df = read_imagefolder(root, group_regex=r"^[^/]+/([^_]+)_")
    assert_table(df)
    by_name = dict(zip((Path(p).name for p in df["path"]), df["group"], strict=True))
    assert by_name["artist0_0001.jpg"] == "artist0" and by_name["artist3_0002.jpg"] == "artist3"
    assert by_name["untitled.jpg"] is None  # unmatched file: no group, still listed
    assert Counter(df["group"].dropna()) == {f"artist{a}": 3 for a in range(4)}
    whole = read_imagefolder(root, group_regex=r"landscape")  # no capture group: whole match
    assert set(whole["group"].dropna()) == {"landscape"}
    assert whole.loc[whole["label"] == "portrait", "group"].isna().all()
    via_options = read_source("imagefolder", root, "class", group_regex=r"^[^/]+/([^_]+)_")
    pd.testing.assert_frame_equal(via_options, df)


def test_imagefolder_group_regex_errors(tmp_path: Path) -> None:
    root = artist_folder(tmp_path / "art")
    with pytest.raises(ConfigError) as err:
        read_imagefolder(root, group_regex="^sculpture/([a-z]+)_")
    msg = str(err.value)
    assert "group_regex='^sculpture/([a-z]+)_'" in msg and "matches no file" in msg
    assert "example path: 'landscape/artist1_0000.jpg'" in msg
    with pytest.raises(ConfigError, match=r"group_regex='\(unclosed' is not a valid regular"):
        read_imagefolder(root, group_regex="(unclosed")


def test_imagefolder_nested_tree_groups_by_subfolder(tmp_path: Path) -> None:
    root = tmp_path / "nested"
    for cls, artists in {"baroque": ("Rubens", "Caravaggio"), "cubism": ("Braque",)}.items():
        for artist in artists:
            for i in range(2):
                write_image(root / cls / artist / "sub" / f"{i}.jpg", 0, seed=i)
    write_image(root / "cubism" / "loose.jpg", 1)
    df = read_imagefolder(root)
    assert_table(df)
    assert Counter(df["label"]) == {"baroque": 4, "cubism": 3}
    groups = dict(zip((os.path.relpath(p, root) for p in df["path"]), df["group"], strict=True))
    assert groups[os.path.join("baroque", "Rubens", "sub", "0.jpg")] == "Rubens"
    assert groups[os.path.join("cubism", "Braque", "sub", "1.jpg")] == "Braque"
    assert groups[os.path.join("cubism", "loose.jpg")] is None
    override = read_imagefolder(root, group_regex=r"^(\w+)/")  # a regex replaces the default
    assert set(override["group"]) == {"baroque", "cubism"}


def test_imagefolder_groups_feed_a_group_split(tmp_path: Path) -> None:
    from arttl.data.split import assign_splits

    root = artist_folder(tmp_path / "art", n_artists=12, per_artist=3)
    df = read_imagefolder(root, group_regex=r"^[^/]+/([^_]+)_")
    out = assign_splits(df, seed=0, split_by="group")
    assert (out.dropna(subset=["group"]).groupby("group")["split"].nunique() == 1).all()
    assert out.attrs["ungrouped_rows"] == 1 and set(out["split"]) == {"train", "val", "test"}


@pytest.mark.parametrize(("name", "key"), [("imagefolder", "group_regex"), ("csv", "group_column")])
def test_dataset_configs_offer_the_group_key(name: str, key: str) -> None:
    from omegaconf import OmegaConf

    conf = Path(__file__).resolve().parents[2] / "conf" / "dataset" / f"{name}.yaml"
    reader = OmegaConf.load(conf).reader
    assert key in reader and reader[key] is None
    assert key in inspect.signature(READERS[name]).parameters


# --------------------------------------------------------------------------- Rijksmuseum CSV


@pytest.mark.parametrize("challenge", ["material", "type", "artist"])
def test_rijks_csv_matches_by_image_id_not_row_order(tmp_path: Path, challenge: str) -> None:
    ds = make_rijks_csv(tmp_path, challenge=challenge)
    meta = pd.read_csv(ds.root / "metadata.csv", dtype=str)
    files = sorted(p.stem for p in (ds.root / "jpg").iterdir())
    assert list(meta["ImageId"]) != files[: len(meta)]  # the CSV is not in file order
    df = ds.read()
    assert_table(df)
    assert Counter(df["label"]) == ds.counts
    values = [c[challenge] for c in RIJKS_CSV_CLASSES]
    for path, label in zip(df["path"], df["label"], strict=True):
        assert values[colour_class(path, 3)] == label
    unmatched = df.attrs["unmatched"]
    for key, n in ds.info.items():
        assert unmatched[key] == n, key
    assert not any("NOMETA" in p for p in df["path"])


def test_rijks_csv_labels_are_clean(tmp_path: Path) -> None:
    ds = make_rijks_csv(tmp_path, challenge="artist")
    df = ds.read()
    assert "Everdingen, Caesar Boëtius van" in set(df["label"])
    assert not any("\\x" in lab or lab != lab.strip() for lab in df["label"])
    assert "anoniem" not in {lab.lower() for lab in df["label"]}
    assert (df["group"] == df["label"]).all()
    typed = read_rijksmuseum(ds.root, "type")
    assert typed["group"].isna().sum() == 6  # anonymous objects keep their type, lose the group


def test_rijks_real_example_metadata(tmp_path: Path) -> None:
    shutil.copy(RIJKS_EXAMPLE, tmp_path / "metadata.csv")
    ids = pd.read_csv(RIJKS_EXAMPLE, dtype=str)["ImageId"].tolist()
    for i, image_id in enumerate(reversed(ids[1:])):  # first object has no image
        write_image(tmp_path / f"{image_id}.jpg", i % 3, seed=i)
    write_image(tmp_path / "0000099_EXTRA.jpg", 0)
    df = read_rijksmuseum(tmp_path, "artist")
    assert len(df) == 7  # 10 rows - 1 without image - 2 anoniem
    assert df.attrs["unmatched"]["metadata_without_image"] == 1
    assert df.attrs["unmatched"]["images_without_metadata"] == 1
    assert df.attrs["unmatched"]["missing_label"] == 2
    by_id = dict(zip((Path(p).stem for p in df["path"]), df["label"], strict=True))
    assert by_id["0000002_SK-A-4877"] == "Maris, Matthijs"
    assert by_id["0000007_RP-P-1992-80"] == "Call, Jan van (I)"
    types = read_rijksmuseum(tmp_path, "type")
    assert len(types) == 9
    assert (
        dict(zip((Path(p).stem for p in types["path"]), types["label"], strict=True))[
            "0000010_BK-NM-10025"
        ]
        == "kruik"
    )


def test_rijks_missing_column_names_column_and_found_columns(tmp_path: Path) -> None:
    ds = make_rijks_csv(tmp_path)
    meta = pd.read_csv(ds.root / "metadata.csv", dtype=str, index_col=0)
    meta.drop(columns=["dc_type"]).to_csv(ds.root / "metadata.csv")
    with pytest.raises(ConfigError) as err:
        read_rijksmuseum(ds.root, "type")
    assert "'dc_type'" in str(err.value) and "dc_materiaal" in str(err.value)
    assert len(read_rijksmuseum(ds.root, "material")) == ds.n_rows  # other challenges still work


def test_rijks_metadata_errors(tmp_path: Path) -> None:
    ds = make_rijks_csv(tmp_path)
    with pytest.raises(ConfigError, match=r"metadata='nope\.csv'"):
        read_rijksmuseum(ds.root, "type", metadata="nope.csv")
    (ds.root / "metadata.csv").rename(ds.root / "other.csv")
    with pytest.raises(ConfigError, match="metadata=None"):
        read_rijksmuseum(ds.root, "type")
    assert len(read_rijksmuseum(ds.root, "type", metadata="other.csv")) == ds.n_rows
    with pytest.raises(ConfigError, match="no metadata row matched any image"):
        read_rijksmuseum(ds.root, "type", metadata="other.csv", image_ext=".png")


def test_rijks_duplicate_image_ids_first_row_wins(tmp_path: Path) -> None:
    root = tmp_path / "r"
    write_image(root / "a.jpg", 0)
    write_image(root / "b.jpg", 1)
    pd.DataFrame(
        {"ImageId": ["a", "b", "a"], "dc_creator": ["x", "y", "z"], "dc_materiaal": ["papier"] * 3,
         "dc_type": ["prent", "schilderij", "beeld"]}
    ).to_csv(root / "metadata.csv")  # fmt: skip
    df = read_rijksmuseum(root, "type")
    assert dict(zip((Path(p).stem for p in df["path"]), df["label"], strict=True)) == {
        "a": "prent",
        "b": "schilderij",
    }
    assert df.attrs["unmatched"]["duplicate_ids"] == 1


# --------------------------------------------------------------------------- Rijksmuseum XML


@pytest.mark.parametrize("challenge", ["material", "type", "artist"])
def test_rijks_xml_fields_and_missing_fields(tmp_path: Path, challenge: str) -> None:
    ds = make_rijks_xml(tmp_path, challenge=challenge)
    df = ds.read()
    assert_table(df)
    assert Counter(df["label"]) == ds.counts
    values = [c[challenge] for c in RIJKS_XML_CLASSES]
    for path, label in zip(df["path"], df["label"], strict=True):
        assert values[colour_class(path, 3)] == label
    assert df.attrs["unmatched"] == {"duplicate_ids": 0, **ds.info}
    assert set(df["group"].dropna()) == {c["artist"] for c in RIJKS_XML_CLASSES}


@pytest.mark.parametrize("challenge", ["material", "type", "artist"])
def test_rijks_release_jpg2_xml2_is_found_by_default(tmp_path: Path, challenge: str) -> None:
    ds = make_rijks_release(tmp_path, challenge=challenge)
    assert {p.name for p in ds.root.iterdir()} == {"jpg2", "xml2"}
    df = read_rijksmuseum(ds.root, challenge)  # no option: the release as unpacked
    assert_table(df)
    assert Counter(df["label"]) == ds.counts
    assert df.attrs["unmatched"] == {"duplicate_ids": 0, **ds.info}
    assert df.attrs["metadata"] == str(ds.root / "xml2")
    assert all(Path(p).parent.name == "jpg2" for p in df["path"])


def test_rijks_xml2_prefers_jpg2_and_xml_prefers_jpg(tmp_path: Path) -> None:
    ds = make_rijks_release(tmp_path, n_per_class=2)
    shutil.copytree(ds.root / "jpg2", ds.root / "jpg")  # a stray copy beside the release
    for p in (ds.root / "jpg").iterdir():
        p.rename(p.with_name("other_" + p.name))
    df = read_rijksmuseum(ds.root, "type")
    assert len(df) == ds.n_rows and {Path(p).parent.name for p in df["path"]} == {"jpg2"}
    (ds.root / "xml2").rename(ds.root / "xml")  # xml/ goes with jpg/, whose names do not match
    with pytest.raises(ConfigError, match="no metadata row matched any image"):
        read_rijksmuseum(ds.root, "type")
    assert len(read_rijksmuseum(ds.root, "type", images_dir="jpg2")) == ds.n_rows


def test_rijks_xml_beside_the_images_in_the_root(tmp_path: Path) -> None:
    ds = make_rijks_xml(tmp_path, challenge="type", xml_dir=".", jpg_dir=".", name="flat")
    assert not any(p.is_dir() for p in ds.root.iterdir())
    df = read_rijksmuseum(ds.root, "type")
    assert Counter(df["label"]) == ds.counts and df.attrs["metadata"] == str(ds.root)


def test_rijks_no_layout_lists_the_layouts_looked_for(tmp_path: Path) -> None:
    root = tmp_path / "download"
    write_image(root / "images" / "0000001_SK-A-1.jpg", 0)
    (root / "readme.txt").write_text("Rijksmuseum Challenge 2014\n")
    with pytest.raises(ConfigError) as err:
        read_rijksmuseum(root, "type")
    msg = str(err.value)
    assert msg.startswith("metadata=None: no Rijksmuseum metadata found under root=")
    assert "images/, readme.txt" in msg  # what the root holds
    for layout in ("metadata.csv", "xml/ + jpg/", "xml2/ + jpg2/", "<ImageId>.xml beside"):
        assert layout in msg, layout
    assert "dataset.reader.metadata" in msg


def test_rijks_release_prepares_a_store_by_default(tmp_path: Path) -> None:
    from arttl.data.build import StoreSettings, prepare_dataset

    ds = make_rijks_release(tmp_path, challenge="type", n_per_class=10)
    summary = prepare_dataset(
        "rijksmuseum", "type", ds.root, read_rijksmuseum, tmp_path / "store",
        StoreSettings(shorter_side=None, seed=0), num_workers=1,
    )  # fmt: skip
    assert summary["num_classes"] == 3 and sum(summary["counts"].values()) == ds.n_rows
    assert len(summary["rejected"]) == 0


def test_hf_without_datasets_says_how_to_install(tmp_path: Path, monkeypatch) -> None:
    import sys

    (tmp_path / "saved").mkdir()
    (tmp_path / "saved" / "state.json").write_text("{}")
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError
    with pytest.raises(ConfigError, match=r"pip install 'arttl\[hf\]'"):
        read_source("hf", tmp_path / "saved", "label")


def test_parse_dc_record_takes_first_usable_values(tmp_path: Path) -> None:
    ds = make_rijks_xml(tmp_path, n_per_class=1)
    first = sorted((ds.root / "xml").glob("0000001_*.xml"))[0]
    assert parse_dc_record(first) == {
        "artist": "Rijn, Rembrandt van",  # not the anonymous first creator, role stripped
        "type": "schilderij",  # first of two types
        "material": "olieverf",  # first "materiaal:", not "techniek: etsen" nor "inkt"
    }
    boetius = sorted((ds.root / "xml").glob("0000005_*.xml"))[0]
    assert parse_dc_record(boetius)["artist"] == "Boëtius, Adam"
    no_format = sorted((ds.root / "xml").glob("0000002_*.xml"))[0]
    assert parse_dc_record(no_format)["material"] is None


# --------------------------------------------------------------------------- Antwerp


@pytest.mark.parametrize("challenge", ["type", "artist"])
def test_antwerp_configured_columns(tmp_path: Path, challenge: str) -> None:
    ds = make_antwerp(tmp_path, challenge=challenge)
    df = read_antwerp(ds.root, challenge, **ds.options)
    assert_table(df)
    assert Counter(df["label"]) == ds.counts
    assert df.attrs["missing"] == 1
    values = [c[challenge] for c in ANTWERP_CLASSES]
    for path, label in zip(df["path"], df["label"], strict=True):
        assert values[colour_class(path, 3)] == label
    assert set(df["group"].dropna()) == {c["artist"] for c in ANTWERP_CLASSES}


def test_antwerp_missing_column_names_the_column(tmp_path: Path) -> None:
    ds = make_antwerp(tmp_path)
    options = {**ANTWERP_OPTIONS, "image_column": "image"}
    with pytest.raises(ConfigError) as err:
        read_antwerp(ds.root, "type", **options)
    msg = str(err.value)
    assert "image_column='image'" in msg and "'bestand'" in msg and "'objectnaam'" in msg
    options = {**ANTWERP_OPTIONS, "label_columns": {"type": "type", "artist": "vervaardiger"}}
    with pytest.raises(ConfigError, match=r"label_columns\.type='type'"):
        read_antwerp(ds.root, "type", **options)
    with pytest.raises(ConfigError, match="columns found"):  # wrong separator: one big column
        read_antwerp(ds.root, "type", **{**ANTWERP_OPTIONS, "sep": ","})


def test_antwerp_extra_challenge_from_config(tmp_path: Path) -> None:
    ds = make_antwerp(tmp_path)
    label_columns = {**ANTWERP_OPTIONS["label_columns"], "inventory": "inventaris"}
    df = read_antwerp(ds.root, "inventory", **{**ANTWERP_OPTIONS, "label_columns": label_columns})
    assert len(df) == ds.n_rows and df["label"].is_unique


# --------------------------------------------------------------------------- Pandora18k


def test_pandora_movement_and_duplicate_file_names(tmp_path: Path) -> None:
    ds = make_pandora(tmp_path)
    df = ds.read()
    assert_table(df)
    assert Counter(df["label"]) == ds.counts
    assert set(df["label"]) == {"Byzantin_Iconography", "Early_Renaissance", "Impressionism"}
    names = Counter(Path(p).name for p in df["path"])
    assert names["img_000.jpg"] == 9  # 3 movements x 3 artist folders, all kept
    assert not any(p.endswith((".txt", ".mat")) for p in df["path"])
    assert df["group"].isna().sum() == 6  # Anonym_unidentified is no group
    assert "Anonym_unidentified" not in set(df["group"].dropna())
    tree = read_pandora18k(ds.root / "Pandora_18k")  # root may be the tree itself
    pd.testing.assert_frame_equal(tree, df)


def test_pandora_artist_drops_anonymous(tmp_path: Path) -> None:
    ds = make_pandora(tmp_path, challenge="artist")
    df = ds.read()
    assert Counter(df["label"]) == ds.counts
    assert len(ds.counts) == 6 and "Anonym_unidentified" not in ds.counts
    assert (df["group"] == df["label"]).all()
    assert df.attrs["dropped"] == 6


# --------------------------------------------------------------------------- WikiArt


@pytest.mark.parametrize(("challenge", "n_classes"), [("style", 27), ("genre", 10), ("artist", 23)])
def test_real_artgan_list_excerpts_parse_every_row(challenge: str, n_classes: int) -> None:
    """Real lines: CRLF (style, genre), the artist lists' header, blank line and double commas."""
    df = parse_artgan_lists(ARTGAN, challenge)
    rows = {
        split: sum(
            1
            for line in next(ARTGAN.glob(f"*_{challenge}_{split}*")).read_bytes().splitlines()
            if line.strip() and not line.startswith(b"(Path")
        )
        for split in ("train", "val")
    }
    assert list(df.columns) == ["relpath", "label", "split"]
    assert Counter(df["split"]) == rows
    assert len(df.attrs["classes"]) == n_classes
    assert set(df["label"]) <= set(df.attrs["classes"])
    assert not df["relpath"].str.contains(r"[,\r\n]|^\s|\s$").any()
    assert df["relpath"].str.endswith(".jpg").all()
    assert df["relpath"].str.count("/").eq(1).all()


def test_real_artgan_style_quirks() -> None:
    df = parse_artgan_lists(ARTGAN, "style")
    nouveau = df[df["label"] == "Art_Nouveau"]
    assert len(nouveau) > 0 and nouveau["relpath"].str.startswith("Art_Nouveau_Modern/").all()
    assert df["relpath"].str.contains("(1)", regex=False).any()
    assert df["relpath"].str.contains("grã©goire-michonze", regex=False).any()  # kept as is
    assert df.attrs["classes"][0] == "Abstract_Expressionism"
    assert df.attrs["classes"][26] == "Ukiyo_e"


@pytest.mark.parametrize("challenge", ["style", "genre", "artist"])
def test_wikiart_lists_layout(tmp_path: Path, challenge: str) -> None:
    ds = make_wikiart_lists(tmp_path, challenge=challenge)
    df = ds.read()
    assert_table(df)
    assert Counter(df["label"]) == ds.counts
    assert Counter(df["split"]) == ds.split_counts  # only train and val: test comes later
    assert df.attrs["missing"] == 2
    assert any("(1)" in p for p in df["path"])
    assert any("joaqu\u00e3\u00adn" in p for p in df["path"])
    assert set(df["group"]) == {"alphonse-mucha", "rembrandt", "claude-monet"}
    if challenge == "style":
        nouveau = df[df["label"] == "Art_Nouveau"]
        assert nouveau["path"].str.contains("/Art_Nouveau_Modern/").all()


def test_wikiart_finds_lists_without_lists_dir(tmp_path: Path) -> None:
    ds = make_wikiart_lists(tmp_path)
    df = read_wikiart(ds.root, "style")  # auto layout, lists found in root/lists
    assert Counter(df["label"]) == ds.counts
    shutil.rmtree(ds.root / "lists")
    with pytest.raises(ConfigError, match="lists_dir"):
        read_wikiart(ds.root, "style")


def test_wikiart_conflicting_duplicates_are_dropped(tmp_path: Path) -> None:
    root = tmp_path / "w"
    for name in ("a_x.jpg", "b_y.jpg", "c_z.jpg"):
        write_image(root / "Realism" / name, 0)
    lists = root / "lists"
    lists.mkdir()
    (lists / "Genre_genre_class").write_text("0 cityscape\n1 landscape\n")
    (lists / "Genre_genre_train.csv").write_bytes(b"Realism/a_x.jpg,0\r\nRealism/b_y.jpg,1\r\n")
    (lists / "Genre_genre_val.csv").write_bytes(
        b"Realism/c_z.jpg,0\r\nRealism/c_z.jpg,1\r\nRealism/a_x.jpg,0\r\n"
    )
    assert len(parse_artgan_lists(lists, "genre")) == 5
    df = read_wikiart(root, "genre", lists_dir=lists)
    assert [Path(p).name for p in df["path"]] == ["a_x.jpg", "b_y.jpg"]
    assert list(df["split"]) == ["train", "train"]
    assert df.attrs["counts"] == {"missing": 0, "duplicates": 1, "conflicting": 2}


def test_wikiart_bad_list_line_names_file_and_line(tmp_path: Path) -> None:
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "Genre_genre_class").write_text("0 cityscape\n")
    (lists / "Genre_genre_train.csv").write_text("Realism/a.jpg,0\nRealism/b.jpg,zero\n")
    (lists / "Genre_genre_val.csv").write_text("Realism/c.jpg,7\n")
    with pytest.raises(ConfigError, match=r"Genre_genre_train.csv:2"):
        parse_artgan_lists(lists, "genre")


def test_wikiart_rasta_keeps_the_given_split(tmp_path: Path) -> None:
    ds = make_wikiart_rasta(tmp_path)
    df = ds.read()
    assert_table(df)
    assert Counter(df["label"]) == ds.counts
    assert Counter(df["split"]) == ds.split_counts
    for path, split in zip(df["path"], df["split"], strict=True):
        assert f"/wikipaintings_{split}/" in path
    assert df.attrs["layout"] == "rasta"
    with pytest.raises(ConfigError, match=r"challenge='genre'.*style"):
        read_wikiart(ds.root, "genre")
    with pytest.raises(ConfigError, match=r"layout='folders'.*auto, lists, rasta"):
        read_wikiart(ds.root, "style", layout="folders")


# --------------------------------------------------------------------------- any CSV


def test_csv_table_paths_groups_and_missing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ds = make_csv_table(tmp_path)
    with caplog.at_level("WARNING", logger="arttl"):
        df = ds.read()
    assert_table(df)
    assert Counter(df["label"]) == ds.counts
    assert df.attrs["missing"] == 1
    # names the label column: with several tasks each reads (and warns about) its own
    assert (
        "csv: 1 row of " in caplog.text
        and "with a 'label' label name no file on disk" in caplog.text
    )
    assert set(df["group"]) == {"artist0", "artist1", "artist2", "artist3"}
    assert df["split"].isna().all()


def test_csv_table_challenge_names_a_column(tmp_path: Path) -> None:
    ds = make_csv_table(tmp_path)
    by_artist = read_csv_table(ds.root, "artist", csv_path="labels.csv")
    assert set(by_artist["label"]) == {"artist0", "artist1", "artist2", "artist3"}
    with pytest.raises(ConfigError) as err:
        read_csv_table(ds.root, "style", csv_path="labels.csv")
    assert "challenge='style'" in str(err.value) and "artist, label" in str(err.value)
    with pytest.raises(ConfigError, match=r"group_column='maker'.*columns found"):
        read_csv_table(ds.root, csv_path="labels.csv", group_column="maker")


def test_csv_table_split_column(tmp_path: Path) -> None:
    root = tmp_path / "t"
    for i in range(3):
        write_image(root / f"{i}.jpg", i)
    table = pd.DataFrame({"path": ["0.jpg", "1.jpg", "2.jpg"], "label": ["a", "b", "a"]})
    table.assign(split=["train", "VAL", ""]).to_csv(root / "labels.csv", index=False)
    df = read_csv_table(root, split_column="split")
    assert list(df["split"]) == ["train", "val", None]
    table.assign(split=["train", "dev", "test"]).to_csv(root / "labels.csv", index=False)
    with pytest.raises(ConfigError, match="'dev'"):
        read_csv_table(root, split_column="split")


def test_csv_table_group_column_gives_groups_and_empty_cells_none(tmp_path: Path) -> None:
    root = tmp_path / "t"
    for i in range(4):
        write_image(root / f"{i}.jpg", i % 2)
    pd.DataFrame(
        {"path": [f"{i}.jpg" for i in range(4)], "label": ["a", "b", "a", "b"],
         "maker": [" Rembrandt ", "", "Vermeer", "Rembrandt"]}
    ).to_csv(root / "labels.csv", index=False)  # fmt: skip
    df = read_csv_table(root, group_column="maker")
    assert_table(df)
    assert list(df["group"]) == ["Rembrandt", None, "Vermeer", "Rembrandt"]
    assert read_csv_table(root)["group"].isna().all()  # no group_column: no groups
    with pytest.raises(ConfigError) as err:
        read_csv_table(root, group_column="artist")
    msg = str(err.value)
    assert "group_column='artist'" in msg and "['path', 'label', 'maker']" in msg


def test_csv_table_path_format_builds_paths_from_id_columns(tmp_path: Path) -> None:
    ds = make_museum_metadata(tmp_path)
    df = read_csv_table(ds.root, **{k: v for k, v in ds.options.items()})
    assert_table(df)
    assert Counter(df["label"]) == ds.counts
    assert df.attrs["missing"] == ds.info["missing"]  # GONE_1 has no image
    assert all(Path(p).parent.name == lbl for p, lbl in zip(df["path"], df["label"], strict=True))
    with pytest.raises(ConfigError, match=r"path_format=.*'Accession'.*columns: \['ID'"):
        read_csv_table(ds.root, **{**ds.options, "path_format": "x/{Accession}.jpg"})


def test_csv_table_query_selects_one_museum(tmp_path: Path) -> None:
    ds = make_museum_metadata(tmp_path)
    for museum, n in ds.info["per_museum"].items():
        df = read_csv_table(ds.root, **ds.options, query=f"Source == '{museum}'")
        assert len(df) == n and all("/" + museum[:3].upper() in p for p in df["path"])
    others = read_csv_table(ds.root, **ds.options, query="Source != 'Met Museum'")
    assert len(others) == ds.info["per_museum"]["Cleveland Museum of Art"]
    with pytest.raises(ConfigError, match=r"selects none of the 61 rows"):
        read_csv_table(ds.root, **ds.options, query="Source == 'Louvre'")
    with pytest.raises(ConfigError, match=r"query=.*cannot be evaluated.*Columns: \['ID'"):
        read_csv_table(ds.root, **ds.options, query="Museum == 'Met'")
