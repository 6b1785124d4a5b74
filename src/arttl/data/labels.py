"""Label cleaning shared by every source reader.

Museum metadata is messy in the same few ways everywhere: stray whitespace, UTF-8 bytes
written out as literal ``\\xc3\\xab`` text (the Rijksmuseum CSV of the paper), placeholder
"names" such as ``anoniem`` that are not a class at all, and role prefixes on creators
(``vervaardiger: Rembrandt van Rijn``). Cleaning them in one place keeps the same artist from
becoming two classes, and keeps "unknown" from becoming the largest class of an artist task.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable

import pandas as pd

__all__ = [
    "DEFAULT_DROP",
    "clean_creator",
    "clean_label",
    "decode_escaped_bytes",
    "label_key",
    "strip_role",
]

#: Placeholder labels that mean "no label" (Dutch, English, German; Pandora18k folder names).
#: Compared case-insensitively, with ``_``/``-``/whitespace runs treated as one space, so
#: ``Anonym_unidentified`` and ``anonym unidentified`` are the same entry.
DEFAULT_DROP: tuple[str, ...] = (
    "anoniem",
    "anonymous",
    "anonym",
    "anonymus",
    "anonym_unidentified",
    "anonymous_unidentified",
    "unidentified",
    "unidentified artist",
    "unknown",
    "unknown artist",
    "onbekend",
    "onbekende kunstenaar",
    "unbekannt",
    "nan",
    "none",
    "null",
    "n/a",
)

_ESCAPED_BYTES = re.compile(r"(?:\\x[0-9a-fA-F]{2})+")
_SEPARATORS = re.compile(r"[\s_\-]+")
_WHITESPACE = re.compile(r"\s+")
# A role prefix has no comma (a comma belongs to "Surname, Given") and is short.
_ROLE_PREFIX = re.compile(r"^\s*([^:,]{1,60}?)\s*:\s*(?=\S)")


def decode_escaped_bytes(text: str) -> str:
    """Turn literal ``\\xHH`` runs back into characters (``Bo\\xc3\\xabtius`` -> ``Boëtius``).

    The paper's CSV was written from Python 2 byte strings, so non-ASCII names appear as
    escaped UTF-8. A run that is not valid UTF-8 is read as Latin-1 (how a single escaped
    byte such as ``\\xe9`` was most likely meant), so no text is ever lost.
    """

    def _decode(match: re.Match[str]) -> str:
        raw = bytes(int(h, 16) for h in match.group(0).split("\\x")[1:])
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("latin-1")

    return _ESCAPED_BYTES.sub(_decode, text)


def label_key(text: str) -> str:
    """Comparison key for drop lists: case-folded, separators (``_ - space``) collapsed."""
    return _SEPARATORS.sub(" ", text.casefold()).strip()


@functools.lru_cache(maxsize=32)
def _drop_keys(drop: tuple[str, ...]) -> frozenset[str]:
    return frozenset(label_key(str(d)) for d in drop)


def _is_missing(value: object) -> bool:
    """None, NaN, pandas.NA, NaT; False for anything else (including containers)."""
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def clean_label(text: object, drop: Iterable[str] = DEFAULT_DROP) -> str | None:
    """Return the canonical label, or None when the value is not a usable label.

    None is returned for missing values (None, NaN), empty text and anything in ``drop``
    (case-insensitive). Otherwise: escaped UTF-8 bytes are decoded, whitespace is stripped
    and collapsed, and the text is NFC-normalised so that the composed and decomposed
    spellings of ``ë`` are one class. Integers (and integral floats that pandas produced
    from an int column with gaps) become ``"3"``, not ``"3.0"``.
    """
    if _is_missing(text):
        return None
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    elif isinstance(text, float) and text.is_integer():
        text = str(int(text))
    elif not isinstance(text, str):
        text = str(text)
    text = decode_escaped_bytes(text)
    text = unicodedata.normalize("NFC", _WHITESPACE.sub(" ", text).strip())
    if not text:
        return None
    if label_key(text) in _drop_keys(tuple(drop)):
        return None
    return text


def strip_role(text: str) -> str:
    """Remove a Rijksmuseum role prefix: ``vervaardiger: Maris, Matthijs`` -> ``Maris, Matthijs``.

    Dublin Core creators carry the role before a colon; the same person must get the same
    label whatever role a record gives them. Text without a role prefix is returned as is.
    """
    return _ROLE_PREFIX.sub("", text, count=1)


def clean_creator(text: object, drop: Iterable[str] = DEFAULT_DROP) -> str | None:
    """Clean a creator string: decode, drop the role prefix, then :func:`clean_label`."""
    if _is_missing(text):
        return None
    return clean_label(strip_role(decode_escaped_bytes(str(text))), drop)
