"""Pieces every source reader shares: path checks, file filters and the output table.

Kept private to ``arttl.data.sources`` so that all readers fail with the same kind of
message and return exactly the same table shape (see the "Source table" contract).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pandas as pd

from arttl.data.images import list_image_files
from arttl.errors import ConfigError, choice_error

TABLE_COLUMNS = ("path", "label", "group", "split")
SPLITS = ("train", "val", "test")


def check_challenge(source: str, challenge: str, challenges: Iterable[str]) -> None:
    """Fail early, before any file is read, when the challenge is not one this source has."""
    if challenge not in tuple(challenges):
        raise choice_error(
            "challenge", challenge, challenges, hint=f"Dataset {source!r} has these challenges"
        )


def require_dir(value: str | os.PathLike[str], key: str = "root") -> Path:
    """Return ``value`` as a Path, raising a ConfigError naming ``key`` if it is no folder."""
    path = Path(value).expanduser()
    if not path.exists():
        raise ConfigError(f"{key}={str(value)!r} does not exist; set {key} to the dataset folder")
    if not path.is_dir():
        raise ConfigError(f"{key}={str(value)!r} is not a folder; set {key} to the dataset folder")
    return path


def resolve_under(root: Path, value: str | os.PathLike[str], key: str, kind: str = "file") -> Path:
    """Resolve a user path: absolute as given, relative first against ``root`` then the cwd.

    Config files name paths relative to the dataset root, but a user typing a path on the
    command line means it relative to where they are; accept both, prefer the root.
    """
    raw = Path(value).expanduser()
    candidates = [raw] if raw.is_absolute() else [root / raw, raw]
    for cand in candidates:
        if (kind == "dir" and cand.is_dir()) or (kind == "file" and cand.is_file()):
            return cand
        if kind == "any" and cand.exists():
            return cand
    what = {"dir": "folder", "file": "file"}.get(kind, "file or folder")
    tried = ", ".join(repr(str(c)) for c in candidates)
    raise ConfigError(f"{key}={str(value)!r}: no such {what} (looked for {tried}); fix {key}")


def is_hidden(name: str) -> bool:
    return name.startswith(".")


#: Which files of an image folder a reader lists: arttl's one policy (recursive, hidden names
#: skipped, certain non-images dropped, optional ``extensions``), in ``arttl.data.images``.
walk_files = list_image_files


class FileIndex:
    """Answer "does root/relpath exist?" with one directory listing per folder.

    Checking 80k WikiArt paths with one ``stat`` each is slow on network disks; listing
    each style folder once is not.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._listings: dict[str, frozenset[str]] = {}

    def exists(self, relpath: str) -> bool:
        folder, _, name = relpath.replace("\\", "/").rpartition("/")
        listing = self._listings.get(folder)
        if listing is None:
            path = self.root / folder if folder else self.root
            try:
                listing = frozenset(
                    e.name for e in os.scandir(path) if e.is_file(follow_symlinks=True)
                )
            except (FileNotFoundError, NotADirectoryError, PermissionError):
                listing = frozenset()
            self._listings[folder] = listing
        return name in listing


def abspath(path: str | os.PathLike[str]) -> str:
    """Absolute path string without resolving symlinks (users may link data folders)."""
    return os.path.abspath(os.fspath(path))


def make_table(
    paths: Sequence[str],
    labels: Sequence[str],
    groups: Sequence[str | None] | None = None,
    splits: Sequence[str | None] | None = None,
    attrs: Mapping[str, object] | None = None,
) -> pd.DataFrame:
    """Build the source table (path, label, group, split), sorted by path for determinism.

    ``group`` and ``split`` are object columns holding ``str`` or ``None`` (not NaN), as the
    contract says; ``split`` is all None when the source prescribes no split.
    """
    n = len(paths)
    df = pd.DataFrame(
        {
            "path": pd.Series(list(paths), dtype=str),
            "label": pd.Series(list(labels), dtype=str),
            "group": pd.Series(list(groups) if groups is not None else [None] * n, dtype=object),
            "split": pd.Series(list(splits) if splits is not None else [None] * n, dtype=object),
        }
    )
    df = df.sort_values("path", kind="stable").reset_index(drop=True)
    if attrs:
        df.attrs.update(attrs)
    return df
