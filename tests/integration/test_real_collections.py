"""The readers on the whole real collections in ``../shared/data``: their counts are the point.

``make test-shared`` runs these (``.ci/run`` too, where the folder exists); ``make test`` runs the
same readers on the excerpts that ``tests/data`` carries.
"""

from __future__ import annotations

import os
from collections import Counter

import pytest

from arttl.data.sources.imagefolder import read_imagefolder
from arttl.data.sources.wikiart import parse_artgan_lists
from tests.fixtures.real_data import SHARED, check_prepares_every_image, needs_shared

AHE = SHARED / "ahe64" / "train_val"
ARTGAN = SHARED / "metadata" / "wikiart_artgan"


@needs_shared("ahe64/train_val", "the whole AHE collection (tests/data carries 60 of its 10,130)")
def test_imagefolder_on_the_whole_ahe_matches_the_disk() -> None:
    df = read_imagefolder(AHE)
    on_disk = {d: len(os.listdir(AHE / d)) for d in os.listdir(AHE)}
    assert len(df) == 10_130 == sum(on_disk.values())
    assert df["label"].nunique() == 10
    assert dict(Counter(df["label"])) == on_disk
    # the disk, not the README, is right about these two
    assert on_disk["apse"] == 505 and on_disk["flying_buttress"] == 405
    assert df["path"].is_unique
    assert sum(not os.path.basename(p).isascii() for p in df["path"]) == 106


@needs_shared("ahe64/train_val", "the whole AHE collection (tests/data carries 60 of its 10,130)")
def test_the_whole_ahe_prepares_every_image(tmp_path) -> None:
    check_prepares_every_image(AHE, tmp_path, n_files=10_130, n_classes=10)


@needs_shared(
    "metadata/wikiart_artgan", "ArtGAN's whole WikiArt split lists (tests/data: excerpts)"
)
@pytest.mark.parametrize(
    ("challenge", "n_train", "n_val", "n_classes"),
    [("style", 57025, 24421, 27), ("genre", 45503, 19492, 10), ("artist", 13346, 5706, 23)],
)
def test_artgan_lists_parse_to_the_note_counts(challenge, n_train, n_val, n_classes) -> None:
    df = parse_artgan_lists(ARTGAN, challenge)
    assert Counter(df["split"]) == {"train": n_train, "val": n_val}
    assert df["label"].nunique() == n_classes == len(df.attrs["classes"])
    assert not df["relpath"].str.contains(r"[,\r\n]|^\s|\s$").any()
    assert df["relpath"].str.endswith(".jpg").all()
    assert df["relpath"].str.count("/").eq(1).all()


@needs_shared("metadata/wikiart_artgan", "ArtGAN's whole artist lists (tests/data: excerpts)")
def test_artgan_artist_class_sizes() -> None:
    artist = parse_artgan_lists(ARTGAN, "artist")
    counts = Counter(artist.loc[artist["split"] == "train", "label"])
    assert min(counts.values()) == 336 and max(counts.values()) == 1323
