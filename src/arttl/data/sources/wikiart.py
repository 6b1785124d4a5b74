"""WikiArt in its two public layouts: ArtGAN split lists, or RASTA split folders.

ArtGAN (github.com/cs-chan/ArtGAN) ships ``Style``/``Genre``/``Artist`` train and val lists
of ``<StyleFolder>/<artist-slug>_<title-slug>.jpg`` paths with class indices, with quirks
(CRLF, a header and double commas in the artist lists, class ``Art_Nouveau`` in folder
``Art_Nouveau_Modern``, mojibake file names that must be kept byte for byte). RASTA
(Lecoutre et al. 2017) defines its split by folders ``wikipaintings_{train,val,test}``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd

from arttl.data.labels import clean_label
from arttl.data.sources._common import (
    SPLITS,
    FileIndex,
    abspath,
    check_challenge,
    is_hidden,
    make_table,
    require_dir,
    resolve_under,
    walk_files,
)
from arttl.errors import ConfigError, choice_error

log = logging.getLogger(__name__)

CHALLENGES: tuple[str, ...] = ("style", "genre", "artist")
RASTA_CHALLENGES: tuple[str, ...] = ("style",)
LAYOUTS: tuple[str, ...] = ("auto", "lists", "rasta")
RASTA_FOLDERS: dict[str, str] = {s: f"wikipaintings_{s}" for s in SPLITS}
LIST_SPLITS: tuple[str, ...] = ("train", "val")
#: Folders searched for the ArtGAN lists when ``lists_dir`` is not given (relative to root).
LIST_DIR_CANDIDATES: tuple[str, ...] = (".", "lists", "wikiart_csv", "WikiArt Dataset")


def _list_stems(challenge: str, kind: str) -> list[str]:
    """File names a list can have: the repo's ``Style/style_train`` or flattened ``Style_...``."""
    task = challenge.capitalize()
    stems = [f"{task}/{challenge}_{kind}", f"{task}_{challenge}_{kind}", f"{challenge}_{kind}"]
    return [stem + ext for stem in stems for ext in ("", ".csv", ".txt")]


def _find_list(lists_dir: Path, challenge: str, kind: str) -> Path | None:
    for name in _list_stems(challenge, kind):
        if (lists_dir / name).is_file():
            return lists_dir / name
    return None


def _read_lines(path: Path) -> list[str]:
    # The mojibake in ArtGAN paths is valid UTF-8 text (it is also how the zip names the
    # files), so it is kept as is; undecodable bytes would only make a row "missing".
    text = path.read_bytes().decode("utf-8", errors="replace")
    return text.splitlines()  # handles CRLF and LF


def _read_classes(path: Path) -> dict[int, str]:
    classes: dict[int, str] = {}
    for lineno, line in enumerate(_read_lines(path), 1):
        if not line.strip():
            continue
        idx, _, name = line.strip().partition(" ")
        label = clean_label(name, ())
        if not idx.isdigit() or label is None:
            raise ConfigError(f"{path}:{lineno}: expected '<index> <Name>', got {line!r}")
        classes[int(idx)] = label
    return classes


def _read_split_list(path: Path, classes: dict[int, str]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    first = True
    for lineno, line in enumerate(_read_lines(path), 1):
        line = line.strip()
        if not line:
            continue
        # rsplit on the last comma: paths never end in a digit-only field, and the artist
        # lists' double comma ("path,,4") leaves a trailing comma on the path.
        relpath, _, idx = line.rpartition(",")
        relpath = relpath.rstrip(",").strip()
        idx = idx.strip()
        if not idx.lstrip("-").isdigit():
            if first:  # header line, e.g. "(Path to image),, (Groundtruth class) "
                first = False
                continue
            raise ConfigError(f"{path}:{lineno}: expected '<path>,<class index>', got {line!r}")
        first = False
        if int(idx) not in classes:
            raise ConfigError(
                f"{path}:{lineno}: class index {idx} is not in the class file "
                f"({len(classes)} classes)"
            )
        rows.append((relpath, classes[int(idx)]))
    return rows


def parse_artgan_lists(lists_dir: str | os.PathLike[str], challenge: str) -> pd.DataFrame:
    """Parse the ArtGAN train/val lists of ``challenge`` into ``(relpath, label, split)``.

    Pure parsing (no image is looked at), so the real lists can be checked without the
    25 GB of images. Every list line becomes a row, duplicates included; ``label`` is the
    class-file name (``Art_Nouveau`` even though its folder is ``Art_Nouveau_Modern``).
    """
    check_challenge("wikiart", challenge, CHALLENGES)
    lists_dir = require_dir(lists_dir, key="lists_dir")
    class_file = _find_list(lists_dir, challenge, "class")
    if class_file is None:
        raise ConfigError(
            f"lists_dir={str(lists_dir)!r} has no {challenge} class file (looked for "
            f"{_list_stems(challenge, 'class')}); point lists_dir at the ArtGAN lists"
        )
    classes = _read_classes(class_file)
    frames = []
    for split in LIST_SPLITS:
        list_file = _find_list(lists_dir, challenge, split)
        if list_file is None:
            raise ConfigError(
                f"lists_dir={str(lists_dir)!r} has no {challenge} {split} list (looked for "
                f"{_list_stems(challenge, split)})"
            )
        rows = _read_split_list(list_file, classes)
        frame = pd.DataFrame(rows, columns=["relpath", "label"], dtype=str)
        frame["split"] = split
        frames.append(frame)
    df = pd.concat(frames, ignore_index=True)
    df.attrs["classes"] = [classes[i] for i in sorted(classes)]
    return df


def read_wikiart(
    root: str | os.PathLike[str],
    challenge: str = "style",
    lists_dir: str | os.PathLike[str] | None = None,
    layout: str = "auto",
) -> pd.DataFrame:
    """Read WikiArt images with the source's own split (``split`` column).

    ``layout="rasta"``: ``root/wikipaintings_{train,val,test}/<Style>/<file>``, label = style
    folder, split kept as given. ``layout="lists"``: ArtGAN lists (``lists_dir``, default:
    the first of root, root/lists, root/wikiart_csv, root/"WikiArt Dataset" holding them),
    images at ``root/<relpath>``. ``auto`` picks RASTA when its folders exist. ``group`` is
    the artist slug of the file name (``claude-monet`` in ``claude-monet_water-lilies.jpg``).
    """
    if layout not in LAYOUTS:
        raise choice_error("layout", layout, LAYOUTS)
    root = require_dir(root)
    if layout == "auto":
        layout = "rasta" if any((root / f).is_dir() for f in RASTA_FOLDERS.values()) else "lists"
    if layout == "rasta":
        check_challenge("wikiart (RASTA layout)", challenge, RASTA_CHALLENGES)
        return _read_rasta(root)
    check_challenge("wikiart", challenge, CHALLENGES)
    return _read_lists(root, challenge, lists_dir)


def artist_slug(filename: str) -> str | None:
    """``claude-monet_water-lilies-6.jpg`` -> ``claude-monet``; None when there is no ``_``."""
    stem = os.path.basename(filename)
    slug, sep, _ = stem.partition("_")
    return slug if sep and slug else None


def _read_rasta(root: Path) -> pd.DataFrame:
    paths: list[str] = []
    labels: list[str] = []
    groups: list[str | None] = []
    splits: list[str] = []
    for split, folder in RASTA_FOLDERS.items():
        split_dir = root / folder
        if not split_dir.is_dir():
            log.warning("wikiart: RASTA split folder %s is missing", split_dir)
            continue
        for style in sorted(e.name for e in os.scandir(split_dir) if e.is_dir()):
            label = clean_label(style, ())
            if is_hidden(style) or label is None:
                continue
            for path in walk_files(split_dir / style):
                paths.append(abspath(path))
                labels.append(label)
                groups.append(artist_slug(path.name))
                splits.append(split)
    if not paths:
        raise ConfigError(f"root={str(root)!r}: the RASTA folders hold no images")
    return make_table(paths, labels, groups, splits, attrs={"layout": "rasta"})


def _find_lists_dir(root: Path, challenge: str, lists_dir: str | os.PathLike[str] | None) -> Path:
    if lists_dir is not None:
        return resolve_under(root, lists_dir, "lists_dir", kind="dir")
    for cand in LIST_DIR_CANDIDATES:
        if _find_list(root / cand, challenge, "train") is not None:
            return root / cand
    looked = [str(root / c) for c in LIST_DIR_CANDIDATES]
    raise ConfigError(
        f"lists_dir=None: no ArtGAN {challenge} lists in {looked}"
        f" and no RASTA folders {list(RASTA_FOLDERS.values())} in root={str(root)!r}; "
        "set lists_dir to the folder of the ArtGAN lists (e.g. 'WikiArt Dataset')"
    )


def _read_lists(
    root: Path, challenge: str, lists_dir: str | os.PathLike[str] | None
) -> pd.DataFrame:
    lists = parse_artgan_lists(_find_lists_dir(root, challenge, lists_dir), challenge)
    # The lists define only train and val. There is no test list: the test split is carved
    # out of the train rows later by the splitter (arttl.data.split), not here.
    labels_of: dict[str, set[str]] = {}
    for rel, label in zip(lists["relpath"], lists["label"], strict=True):
        labels_of.setdefault(rel, set()).add(label)
    conflicting = {rel for rel, labs in labels_of.items() if len(labs) > 1}

    index = FileIndex(root)
    seen: set[str] = set()
    counts = {"missing": 0, "duplicates": 0, "conflicting": 0}
    paths: list[str] = []
    labels: list[str] = []
    groups: list[str | None] = []
    splits: list[str] = []
    for rel, label, split in zip(lists["relpath"], lists["label"], lists["split"], strict=True):
        if rel in conflicting:  # one image, two classes: no right answer to train on
            counts["conflicting"] += 1
            continue
        if rel in seen:  # listed twice with the same label: keep the first (train before val)
            counts["duplicates"] += 1
            continue
        seen.add(rel)
        if not index.exists(rel):
            counts["missing"] += 1
            continue
        paths.append(abspath(root / rel))
        labels.append(label)
        groups.append(artist_slug(rel))
        splits.append(split)
    if counts["missing"]:
        log.warning(
            "wikiart: %d of %d listed images are not under root=%s",
            counts["missing"], len(lists), root,
        )  # fmt: skip
    if not paths:
        example = lists["relpath"].iloc[0] if len(lists) else None
        raise ConfigError(
            f"wikiart: none of the {len(lists)} listed {challenge} images exists under "
            f"root={str(root)!r} (e.g. {example!r}); set root to the folder holding the "
            "style folders"
        )
    return make_table(
        paths,
        labels,
        groups,
        splits,
        attrs={
            "layout": "lists",
            "missing": counts["missing"],
            "counts": counts,
            "classes": lists.attrs["classes"],
        },
    )
