"""Pandora18k: ``Pandora_18k/<NN>_<Movement>/<Artist_folder>/<file>.jpg``.

The official folds are in a MATLAB file, so the movement and artist labels are read from
the folder tree. File names are arbitrary web names that repeat across artists, so the
full path (never the file name) identifies an image.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from arttl.data.labels import DEFAULT_DROP, clean_label
from arttl.data.sources._common import (
    abspath,
    check_challenge,
    is_hidden,
    make_table,
    require_dir,
    walk_files,
)
from arttl.errors import ConfigError

CHALLENGES: tuple[str, ...] = ("movement", "artist")
TREE_NAME = "Pandora_18k"
_NUMBER_PREFIX = re.compile(r"^\d+_")


def movement_name(folder: str) -> str:
    """``01_Byzantin_Iconography`` -> ``Byzantin_Iconography`` (the number only orders folders)."""
    return _NUMBER_PREFIX.sub("", folder, count=1)


def read_pandora18k(
    root: str | os.PathLike[str],
    challenge: str = "movement",
    drop: Iterable[str] = DEFAULT_DROP,
    extensions: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Read the Pandora18k tree; label = movement (no ``NN_``) or artist folder.

    ``root`` is the ``Pandora_18k`` folder or the folder containing it. ``group`` is the
    artist folder, or None for placeholder artists such as ``Anonym_unidentified`` (an
    "anonymous" group would tie unrelated painters into one split). For the artist
    challenge those placeholder artists are dropped. Files directly in a movement folder
    have no artist. File filtering as in ``read_imagefolder``.
    """
    check_challenge("pandora18k", challenge, CHALLENGES)
    root = require_dir(root)
    tree = root / TREE_NAME if (root / TREE_NAME).is_dir() else root
    movements = sorted(e.name for e in os.scandir(tree) if e.is_dir() and not is_hidden(e.name))
    if not movements:
        raise ConfigError(
            f"root={str(root)!r} has no movement folders; point root at the folder holding "
            f"{TREE_NAME}/<NN>_<Movement>/<Artist>/<image>"
        )
    drop = tuple(drop)
    paths: list[str] = []
    labels: list[str] = []
    groups: list[str | None] = []
    dropped = 0
    for folder in movements:
        movement = clean_label(movement_name(folder), ())
        if movement is None:
            continue
        for path in walk_files(tree / folder, extensions):
            parts = path.relative_to(tree / folder).parts
            artist = clean_label(parts[0], drop) if len(parts) > 1 else None
            label = movement if challenge == "movement" else artist
            if label is None:
                dropped += 1
                continue
            paths.append(abspath(path))
            labels.append(label)
            groups.append(artist)
    if not paths:
        raise ConfigError(f"root={str(root)!r}: no images found in the Pandora18k tree {tree}")
    return make_table(paths, labels, groups, attrs={"dropped": dropped, "tree": str(Path(tree))})
