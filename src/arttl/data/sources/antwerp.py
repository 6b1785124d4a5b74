"""Antwerp museum collections: one CSV naming each image file and its labels.

The Antwerp data set of the paper is not public and its column names are not known, so
every column name is a config value rather than a constant here; a wrong name fails at
once with the columns the file actually has.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from arttl.data.labels import DEFAULT_DROP, clean_creator, clean_label
from arttl.data.sources._common import (
    FileIndex,
    abspath,
    check_challenge,
    make_table,
    require_dir,
    resolve_under,
)
from arttl.errors import ConfigError

log = logging.getLogger(__name__)

CHALLENGES: tuple[str, ...] = ("type", "artist")
DEFAULT_LABEL_COLUMNS: Mapping[str, str] = {"type": "type", "artist": "artist"}


def read_antwerp(
    root: str | os.PathLike[str],
    challenge: str,
    metadata: str | os.PathLike[str] = "metadata.csv",
    image_column: str = "image",
    label_columns: Mapping[str, str] | None = None,
    images_dir: str | os.PathLike[str] | None = None,
    drop: Iterable[str] = DEFAULT_DROP,
    sep: str = ",",
    image_ext: str | None = None,
) -> pd.DataFrame:
    """Read the Antwerp CSV: one row per image file, one label column per challenge.

    ``label_columns`` maps challenge -> CSV column (default ``{"type": "type", "artist":
    "artist"}``); adding a key adds a challenge. Image names are resolved under
    ``images_dir`` (default ``root``); ``image_ext`` is appended to names without it.
    ``group`` is the cleaned artist when the artist column exists. Rows whose image file is
    missing are left out and counted in ``df.attrs["missing"]``.
    """
    columns = dict(DEFAULT_LABEL_COLUMNS if label_columns is None else label_columns)
    check_challenge("antwerp", challenge, columns)
    root = require_dir(root)
    meta_path = resolve_under(root, metadata, "metadata", kind="file")
    img_dir = root if images_dir is None else resolve_under(root, images_dir, "images_dir", "dir")

    df = _read_metadata(meta_path, sep, image_column, challenge, columns[challenge])
    artist_col = columns.get("artist")
    has_artist = artist_col is not None and artist_col in df.columns
    creators = df[artist_col].tolist() if has_artist else [None] * len(df)
    rows = zip(df[image_column].tolist(), df[columns[challenge]].tolist(), creators, strict=True)
    paths, labels, groups, counts = _usable_rows(rows, img_dir, image_ext, drop, has_artist)

    if counts["missing"]:
        log.warning("antwerp: %d images named in %s are not on disk", counts["missing"], meta_path)
    if not paths:
        raise ConfigError(
            f"antwerp: no usable rows (metadata={str(meta_path)!r}, images_dir={str(img_dir)!r}, "
            f"image_column={image_column!r}; counts {counts}); check images_dir and image_column"
        )
    return make_table(paths, labels, groups, attrs={"missing": counts["missing"], "counts": counts})


def _read_metadata(
    meta_path: Path, sep: str, image_column: str, challenge: str, label_column: str
) -> pd.DataFrame:
    """The metadata CSV as strings, column names stripped; the image and label columns exist."""
    df = pd.read_csv(meta_path, dtype=str, keep_default_na=False, na_filter=False, sep=sep)
    df.columns = [str(c).strip() for c in df.columns]
    for key, col in (("image_column", image_column), (f"label_columns.{challenge}", label_column)):
        if col not in df.columns:
            raise ConfigError(
                f"{key}={col!r} is not a column of metadata={str(meta_path)!r}; "
                f"columns found: {list(df.columns)} (check sep={sep!r} too)"
            )
    return df


def _usable_rows(
    rows: Iterable[tuple[str, str, str | None]],
    img_dir: Path,
    image_ext: str | None,
    drop: Iterable[str],
    has_artist: bool,
) -> tuple[list[str], list[str], list[str | None], dict[str, int]]:
    """(paths, labels, groups, counts) of the (image name, label, creator) rows whose image is
    on disk and whose label is kept; the first row of a repeated image name wins."""
    index = FileIndex(img_dir)
    counts = {"missing": 0, "missing_label": 0, "duplicates": 0}
    seen: set[str] = set()
    paths: list[str] = []
    labels: list[str] = []
    groups: list[str | None] = []
    for name, value, creator in rows:
        rel = str(name).strip().replace("\\", "/")
        if not rel:
            counts["missing"] += 1
            continue
        if image_ext and not rel.lower().endswith(image_ext.lower()):
            rel += image_ext
        if rel in seen:
            counts["duplicates"] += 1
            continue
        seen.add(rel)
        label = clean_label(value, drop)
        if label is None:
            counts["missing_label"] += 1
            continue
        if not (os.path.isabs(rel) and os.path.isfile(rel)) and not index.exists(rel):
            counts["missing"] += 1
            continue
        paths.append(abspath(img_dir / rel))
        labels.append(label)
        groups.append(clean_creator(creator, drop) if has_artist else None)
    return paths, labels, groups, counts
