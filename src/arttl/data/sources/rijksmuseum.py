"""Rijksmuseum Challenge 2014: images ``<ImageId>.jpg`` plus metadata as CSV or Dublin Core XML.

Two metadata forms exist in the wild: the paper's flat CSV (``ImageId, dc_creator,
dc_materiaal, dc_type``) and the original release's one-XML-per-object folder. Both are
matched to image files by ImageId, never by row position: the CSV's order is not the
folder's order, and either side may have entries the other lacks.

Folder layouts found without any option (``LAYOUTS``, tried in this order):

- ``metadata.csv`` with the images in ``jpg/``, ``jpg2/`` or the root (the paper's CSV);
- ``xml/`` + ``jpg/`` (one Dublin Core XML per object);
- ``xml2/`` + ``jpg2/`` (the Challenge 2014 release as unpacked; the paper's scripts read it);
- ``<ImageId>.xml`` files beside ``<ImageId>.jpg`` in the root itself.
"""

from __future__ import annotations

import logging
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from arttl.data.labels import DEFAULT_DROP, clean_creator, clean_label
from arttl.data.sources._common import (
    abspath,
    check_challenge,
    make_table,
    require_dir,
    resolve_under,
)
from arttl.errors import ConfigError

log = logging.getLogger(__name__)

CHALLENGES: tuple[str, ...] = ("material", "type", "artist")

#: CSV column per challenge (the paper's ``metadata.csv``).
CSV_COLUMNS: dict[str, str] = {
    "material": "dc_materiaal",
    "type": "dc_type",
    "artist": "dc_creator",
}
ID_COLUMN = "ImageId"

NS = {
    "oai_dc": "http://www.openarchives.org/OAI/2.0/oai_dc/",
    "dc": "http://purl.org/dc/elements/1.1/",
}
_DC = "{" + NS["dc"] + "}"
MATERIAL_PREFIX = "materiaal"


def read_rijksmuseum(
    root: str | os.PathLike[str],
    challenge: str,
    metadata: str | os.PathLike[str] | None = None,
    images_dir: str | os.PathLike[str] | None = None,
    drop: Iterable[str] = DEFAULT_DROP,
    image_ext: str = ".jpg",
) -> pd.DataFrame:
    """Read the Rijksmuseum images and the label of ``challenge`` (material, type, artist).

    ``metadata`` is a CSV file or a folder of ``<ImageId>.xml`` files (default: the first
    of ``root/metadata.csv``, ``root/xml``, ``root/xml2``, or ``root`` itself when it holds
    ``.xml`` files); ``images_dir`` defaults to ``root/jpg`` or ``root/jpg2`` (``jpg2``
    first beside ``xml2``) if present, else ``root``. When nothing matches, the ConfigError
    lists the layouts looked for. ``group`` is the cleaned creator (None when anonymous).
    ``df.attrs["unmatched"]`` counts what could not be used and why; ``df.attrs["unlabelled"]``
    lists the images with metadata but no label for ``challenge``.
    """
    check_challenge("rijksmuseum", challenge, CHALLENGES)
    root = require_dir(root)
    meta_path = _metadata_path(root, metadata)
    img_dir = _images_dir(root, images_dir, meta_path)
    images = _index_images(img_dir, image_ext)
    drop = tuple(drop)

    if meta_path.is_dir():
        records, counts, matched_ids = _read_xml_folder(meta_path, challenge, images, drop)
    else:
        records, counts, matched_ids = _read_csv(meta_path, challenge, images, drop, image_ext)
    counts["images_without_metadata"] = len(set(images) - matched_ids)
    if not records:
        if not matched_ids:
            sample_imgs = sorted(images)[:3]
            raise ConfigError(
                f"rijksmuseum: no metadata row matched any image (metadata={str(meta_path)!r}, "
                f"images_dir={str(img_dir)!r}, image_ext={image_ext!r}, {len(images)} images, "
                f"e.g. {sample_imgs}); ImageIds must equal image file names without extension"
            )
        raise ConfigError(
            f"rijksmuseum: images matched metadata, but none has a usable {challenge!r} label "
            f"(metadata={str(meta_path)!r}; counts {counts})"
        )
    if any(counts.values()):
        log.info("rijksmuseum %s: %d rows; not used: %s", challenge, len(records), counts)
    # images with metadata but no label for this challenge: a multi-task read rejects by name
    # those that have none of its tasks (arttl.data.tasks)
    labelled = {i for i, _, _ in records}
    unlabelled = sorted(abspath(images[i]) for i in matched_ids - labelled)

    return make_table(
        paths=[abspath(images[i]) for i, _, _ in records],
        labels=[label for _, label, _ in records],
        groups=[group for _, _, group in records],
        attrs={"unmatched": counts, "metadata": str(meta_path), "unlabelled": unlabelled},
    )


#: Default (metadata, image folders) layouts relative to root, in the order they are tried;
#: "." is the root itself (for metadata: when it holds ``.xml`` files).
LAYOUTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("metadata.csv", ("jpg", "jpg2", ".")),
    ("xml", ("jpg", "jpg2", ".")),
    ("xml2", ("jpg2", "jpg", ".")),
    (".", (".",)),
)
_LAYOUT_HELP = (
    "metadata.csv with the images in jpg/, jpg2/ or the root (the paper's CSV); "
    "xml/ + jpg/ (one Dublin Core XML per object); "
    "xml2/ + jpg2/ (the Rijksmuseum Challenge 2014 release as unpacked); "
    "<ImageId>.xml beside <ImageId>.jpg in the root"
)


def _has_xml(folder: Path) -> bool:
    with os.scandir(folder) as entries:
        return any(
            e.name.lower().endswith(".xml") and not e.name.startswith(".") and e.is_file()
            for e in entries
        )


def _metadata_path(root: Path, metadata: str | os.PathLike[str] | None) -> Path:
    if metadata is not None:
        return resolve_under(root, metadata, "metadata", kind="any")
    for name, _ in LAYOUTS:
        if name == ".":
            if _has_xml(root):
                return root
        elif (root / name).exists():
            return root / name
    with os.scandir(root) as entries:
        found = sorted(e.name + ("/" if e.is_dir() else "") for e in entries)
    shown = ", ".join(found[:8]) + (f", ... ({len(found)} entries)" if len(found) > 8 else "")
    raise ConfigError(
        f"metadata=None: no Rijksmuseum metadata found under root={str(root)!r} (it holds: "
        f"{shown or 'nothing'}). Looked for these layouts: {_LAYOUT_HELP}. Set "
        "dataset.root to the folder holding one of them, or dataset.reader.metadata to the "
        "CSV file or the folder of Dublin Core XML files (and dataset.reader.images_dir to "
        "the image folder)"
    )


def _images_dir(
    root: Path, images_dir: str | os.PathLike[str] | None, meta_path: Path | None = None
) -> Path:
    if images_dir is not None:
        return resolve_under(root, images_dir, "images_dir", kind="dir")
    # The image folder that goes with the metadata found (jpg2/ beside xml2/), else jpg/.
    layout = dict(LAYOUTS)
    key = meta_path.name if meta_path is not None and meta_path.parent == root else ""
    for name in layout.get(key, layout["metadata.csv"]):
        if name == "." or (root / name).is_dir():
            return root if name == "." else root / name
    return root


def _index_images(img_dir: Path, image_ext: str) -> dict[str, Path]:
    """Map ImageId (file stem) -> image path for files with ``image_ext`` (any case)."""
    ext = image_ext.lower() if image_ext.startswith(".") else f".{image_ext.lower()}"
    images: dict[str, Path] = {}
    with os.scandir(img_dir) as entries:
        for entry in entries:
            stem, suffix = os.path.splitext(entry.name)
            if suffix.lower() == ext and not entry.name.startswith(".") and entry.is_file():
                images[stem] = img_dir / entry.name
    return images


def _strip_ext(image_id: str, image_ext: str) -> str:
    if image_id.lower().endswith(image_ext.lower()):
        return image_id[: -len(image_ext)]
    return image_id


Record = tuple[str, str, str | None]  # (ImageId, label, group)
Parsed = tuple[list[Record], dict[str, int], set[str]]  # records, counts, ImageIds with an image


def _new_counts() -> dict[str, int]:
    return {
        "metadata_without_image": 0,
        "images_without_metadata": 0,
        "missing_label": 0,
        "duplicate_ids": 0,
        "unreadable_metadata": 0,
    }


def _read_csv(
    path: Path,
    challenge: str,
    images: dict[str, Path],
    drop: tuple[str, ...],
    image_ext: str,
) -> Parsed:
    # dtype=str + no NA parsing: a label is text; empty cells become "" and clean to None.
    df = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    df.columns = [str(c).strip() for c in df.columns]
    needed = [ID_COLUMN, CSV_COLUMNS[challenge]]
    for col in needed:
        if col not in df.columns:
            raise ConfigError(
                f"metadata={str(path)!r} has no column {col!r} (needed for challenge "
                f"{challenge!r}); columns found: {list(df.columns)}"
            )
    creator_col = CSV_COLUMNS["artist"]
    creators = df[creator_col].tolist() if creator_col in df.columns else [None] * len(df)
    values = df[CSV_COLUMNS[challenge]].tolist()
    counts = _new_counts()
    records: list[Record] = []
    matched: set[str] = set()
    for raw_id, creator, value in zip(df[ID_COLUMN].tolist(), creators, values, strict=True):
        image_id = _strip_ext(str(raw_id).strip(), image_ext)
        if image_id in matched:
            counts["duplicate_ids"] += 1  # first row wins; later rows for the same id ignored
            continue
        if image_id not in images:
            counts["metadata_without_image"] += 1
            continue
        matched.add(image_id)
        group = clean_creator(creator, drop)
        label = group if challenge == "artist" else clean_label(value, drop)
        if label is None:
            counts["missing_label"] += 1
            continue
        records.append((image_id, label, group))
    return records, counts, matched


def parse_dc_record(path: str | os.PathLike[str], drop: Iterable[str] = DEFAULT_DROP) -> dict:
    """Labels of one Dublin Core XML record: ``{"artist", "type", "material"}`` (None if absent).

    artist = first creator that is not anonymous (role prefix removed); type = first
    non-empty ``dc:type``; material = first ``dc:format`` of the form ``materiaal: ...``.
    Raises ``xml.etree.ElementTree.ParseError`` for malformed XML.
    """
    drop = tuple(drop)
    tree = ET.parse(path)
    dc = tree.getroot().find(".//oai_dc:dc", NS)
    scope = dc if dc is not None else tree.getroot()

    def first(tag: str, convert) -> str | None:
        for el in scope.iter(_DC + tag):
            value = convert(el.text)
            if value is not None:
                return value
        return None

    def material(text: str | None) -> str | None:
        if not text or ":" not in text:
            return None
        key, _, value = text.partition(":")
        if key.strip().casefold() != MATERIAL_PREFIX:
            return None
        return clean_label(value, drop)

    return {
        "artist": first("creator", lambda t: clean_creator(t, drop)),
        "type": first("type", lambda t: clean_label(t, drop)),
        "material": first("format", material),
    }


def _read_xml_folder(
    folder: Path, challenge: str, images: dict[str, Path], drop: tuple[str, ...]
) -> Parsed:
    counts = _new_counts()
    records: list[Record] = []
    matched: set[str] = set()
    with os.scandir(folder) as entries:
        names = sorted(
            e.name
            for e in entries
            if e.name.lower().endswith(".xml") and not e.name.startswith(".") and e.is_file()
        )
    if not names:
        raise ConfigError(
            f"metadata={str(folder)!r} is a folder without any .xml file; set metadata to the "
            "Dublin Core XML folder or the metadata CSV"
        )
    for name in names:
        image_id = name[: -len(".xml")]
        if image_id not in images:
            counts["metadata_without_image"] += 1
            continue
        matched.add(image_id)
        try:
            fields = parse_dc_record(folder / name, drop)
        except ET.ParseError as err:
            # One broken record must not stop a 100k-record read; it is counted and logged.
            log.warning("rijksmuseum: cannot parse %s: %s", folder / name, err)
            counts["unreadable_metadata"] += 1
            continue
        label = fields[challenge]
        if label is None:
            counts["missing_label"] += 1
            continue
        records.append((image_id, label, fields["artist"]))
    return records, counts, matched
