"""Any ``<class>/<image>`` folder tree (torchvision ImageFolder style), e.g. AHE.

Every regular file in a class folder is listed except hidden files and obvious
non-images (``.txt``, ``.csv``, ...): a corrupt or mislabelled image must reach the decoder
and be rejected there *with a reason*, not vanish here because of its extension.

The optional ``group`` (what ``store.split_by=group`` keeps in one split, e.g. the artist)
is the sub-folder of a nested ``<class>/<subfolder>/<image>`` tree, or what ``group_regex``
extracts from each file's path.
"""

from __future__ import annotations

import os
import re
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
    group_regex: str | None = None,
) -> pd.DataFrame:
    """Label = the top-level folder name; files in sub-folders belong to that class.

    ``extensions`` (case-insensitive, e.g. ``[".jpg", ".png"]``) keeps only those files;
    None keeps every non-hidden file that is not an obvious non-image. Folder names in
    ``drop`` are skipped (nothing by default: ``unknown`` may be a real class here).

    ``group``: with ``group_regex`` None, the first sub-folder below the class folder
    (``<class>/<subfolder>/.../<image>``, e.g. an artist folder), None for files directly in
    the class folder (so a flat tree has no groups). With ``group_regex``, the regex is
    searched in each file's path relative to ``root`` with ``/`` separators
    (``<class>/<file>``); its first capture group (or the whole match) is the group, and a
    file it does not match has none. ``split`` is None.
    """
    check_challenge("imagefolder", challenge, CHALLENGES)
    root = require_dir(root)
    pattern = _compile(group_regex)
    paths: list[str] = []
    labels: list[str] = []
    groups: list[str | None] = []
    with os.scandir(root) as entries:
        classes = sorted(e.name for e in entries if e.is_dir() and not is_hidden(e.name))
    for folder in classes:
        label = clean_label(folder, drop)
        if label is None:
            continue
        for path in walk_files(root / folder, extensions):
            paths.append(abspath(path))
            labels.append(label)
            rel = path.relative_to(root)
            if pattern is None:
                groups.append(clean_label(rel.parts[1], ()) if len(rel.parts) > 2 else None)
            else:
                groups.append(_match_group(pattern, rel.as_posix()))
    if not paths:
        raise ConfigError(
            f"root={str(root)!r} has no <class>/<image> files (class folders found: "
            f"{classes[:10]}); set root to the folder whose sub-folders are the classes"
        )
    if pattern is not None and all(g is None for g in groups):
        example = os.path.relpath(paths[0], root).replace(os.sep, "/")
        raise ConfigError(
            f"group_regex={group_regex!r} matches no file under root={str(root)!r} "
            f"(example path: {example!r}); the regex is searched in the path relative to root "
            "with '/' separators, e.g. '^[^/]+/([^_]+)_' takes 'artist' from "
            "'class/artist_0001.jpg'"
        )
    return make_table(paths, labels, groups)


def _compile(group_regex: str | None) -> re.Pattern[str] | None:
    if group_regex is None:
        return None
    try:
        return re.compile(group_regex)
    except re.error as err:
        raise ConfigError(
            f"group_regex={group_regex!r} is not a valid regular expression ({err})"
        ) from None


def _match_group(pattern: re.Pattern[str], relpath: str) -> str | None:
    match = pattern.search(relpath)
    if match is None:
        return None
    value = match.group(1) if pattern.groups else match.group(0)
    return clean_label(value, ()) if value is not None else None
