"""Any ``<class>/<image>`` folder tree (torchvision ImageFolder style), e.g. AHE.

Every regular file in a class folder is listed except hidden files and obvious
non-images (``.txt``, ``.csv``, ...): a corrupt or mislabelled image must reach the decoder
and be rejected there *with a reason*, not vanish here because of its extension.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import pandas as pd

from arttl.data.labels import clean_label
from arttl.data.sources._common import (
    abspath,
    check_challenge,
    is_hidden,
    make_table,
    require_dir,
    walk_files,
)
from arttl.errors import ConfigError

CHALLENGES: tuple[str, ...] = ("class",)


def read_imagefolder(
    root: str | os.PathLike[str],
    challenge: str = "class",
    extensions: Iterable[str] | None = None,
    drop: Iterable[str] = (),
) -> pd.DataFrame:
    """Label = the top-level folder name; files in sub-folders belong to that class.

    ``extensions`` (case-insensitive, e.g. ``[".jpg", ".png"]``) keeps only those files;
    None keeps every non-hidden file that is not an obvious non-image. Folder names in
    ``drop`` are skipped (nothing by default: ``unknown`` may be a real class here).
    ``group`` and ``split`` are None.
    """
    check_challenge("imagefolder", challenge, CHALLENGES)
    root = require_dir(root)
    paths: list[str] = []
    labels: list[str] = []
    with os.scandir(root) as entries:
        classes = sorted(e.name for e in entries if e.is_dir() and not is_hidden(e.name))
    for folder in classes:
        label = clean_label(folder, drop)
        if label is None:
            continue
        for path in walk_files(root / folder, extensions):
            paths.append(abspath(path))
            labels.append(label)
    if not paths:
        raise ConfigError(
            f"root={str(root)!r} has no <class>/<image> files (class folders found: "
            f"{classes[:10]}); set root to the folder whose sub-folders are the classes"
        )
    return make_table(paths, labels)
