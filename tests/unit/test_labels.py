"""Label cleaning: the same name must be one class, and placeholders no class at all."""

from __future__ import annotations

import math
import unicodedata

import pandas as pd
import pytest

from arttl.data.labels import (
    DEFAULT_DROP,
    clean_creator,
    clean_label,
    decode_escaped_bytes,
    strip_role,
)
from tests.fixtures.real_data import EXCERPTS

EXAMPLE_CSV = EXCERPTS / "rijksmuseum_example_metadata.csv"


def test_escaped_utf8_bytes_are_decoded_and_whitespace_stripped() -> None:
    raw = " Everdingen, Caesar Bo\\xc3\\xabtius van"  # literal backslash-x text, as in the CSV
    assert "\\x" in raw
    assert clean_label(raw) == "Everdingen, Caesar Boëtius van"


def test_several_escaped_runs_and_invalid_utf8_fall_back_to_latin1() -> None:
    assert decode_escaped_bytes("Gr\\xc3\\xa9goire \\xc3\\x89mile") == "Grégoire Émile"
    # a lone \xe9 is not valid UTF-8: read as Latin-1 instead of being lost
    assert decode_escaped_bytes("caf\\xe9") == "café"
    assert decode_escaped_bytes("no escapes") == "no escapes"


@pytest.mark.parametrize("value", [None, float("nan"), pd.NA, "", "   ", "\t\n"])
def test_missing_and_empty_values_are_none(value: object) -> None:
    assert clean_label(value) is None


@pytest.mark.parametrize(
    "value",
    ["anoniem", " Anoniem ", "ANONYMOUS", "Anonym_unidentified", "anonym unidentified", "onbekend",
     "Unknown", "unidentified"],
)  # fmt: skip
def test_default_drop_list_is_case_and_separator_insensitive(value: str) -> None:
    assert clean_label(value) is None
    assert clean_label(value, drop=()) == value.strip()


def test_custom_drop_list_replaces_the_default() -> None:
    assert clean_label("prent", drop=["Prent"]) is None
    assert clean_label("anoniem", drop=["prent"]) == "anoniem"
    assert "anoniem" in DEFAULT_DROP


def test_numbers_become_text_without_float_artifacts() -> None:
    assert clean_label(3) == "3"
    assert clean_label(3.0) == "3"  # pandas makes int columns with gaps float
    assert clean_label(2.5) == "2.5"
    assert clean_label(math.nan) is None


def test_inner_whitespace_collapsed_and_unicode_normalised() -> None:
    decomposed = unicodedata.normalize("NFD", "Boëtius")
    assert decomposed != "Boëtius"
    assert clean_label(f"  {decomposed}  ") == "Boëtius"
    assert clean_label("Maris,   Matthijs") == "Maris, Matthijs"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("vervaardiger: Maris, Matthijs", "Maris, Matthijs"),
        ("  prentmaker :Coornhert, Dirck Volckertsz", "Coornhert, Dirck Volckertsz"),
        ("Maris, Matthijs", "Maris, Matthijs"),  # no role: unchanged
        ("Call, Jan van (I)", "Call, Jan van (I)"),
    ],
)
def test_strip_role(raw: str, expected: str) -> None:
    assert strip_role(raw).strip() == expected


def test_clean_creator_drops_anonymous_after_the_role_and_decodes() -> None:
    assert clean_creator("vervaardiger: anoniem") is None
    assert clean_creator("vervaardiger: Bo\\xc3\\xabtius, Adam") == "Boëtius, Adam"
    assert clean_creator(None) is None
    assert clean_creator("vervaardiger: Rembrandt", drop=["rembrandt"]) is None


def test_real_rijksmuseum_example_creators() -> None:
    df = pd.read_csv(EXAMPLE_CSV, dtype=str, keep_default_na=False)
    cleaned = [clean_creator(c) for c in df["dc_creator"]]
    assert cleaned[0] == "Everdingen, Caesar Boëtius van"
    assert cleaned[1] == "Maris, Matthijs"
    assert cleaned[-2:] == [None, None]  # the two "anoniem" objects
    assert all(c is None or c == c.strip() for c in cleaned)
    assert [clean_label(t) for t in df["dc_type"]][-2:] == ["stortebeker", "kruik"]
