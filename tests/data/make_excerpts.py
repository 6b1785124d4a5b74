"""Rebuild tests/data's excerpts of real collections from the shared data (provenance).

    python tests/data/make_excerpts.py ../shared/data

The excerpts carry the real files whose quirks the readers must survive, so that the tests on them
run in a plain clone; the whole collections stay in ``../shared/data`` (``make test-shared``).
Files are copied byte for byte; list excerpts keep their lines' original bytes and line endings.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
AHE_CLASSES = ("apse", "bell_tower", "column", "flying_buttress", "stained_glass", "vault")
AHE_PER_CLASS = 10
NON_ASCII_PER_CLASS = 3
GRAYSCALE = "flying_buttress/Le_Mont_Saint-Michel_en_1948_(9).jpg"
ARTGAN_HEAD = 20  # data rows taken from the top of each list, besides the quirky ones
ARTGAN_QUIRKS = (b"Art_Nouveau_Modern/", b"(1)", "grã©goire-michonze".encode(), "joaquã".encode())
ARTGAN_PER_QUIRK = 3


def ahe_excerpt(src: Path, dst: Path) -> None:
    """Per class: its byte-identical duplicates, its non-ASCII names, the grayscale file, then
    the first ASCII-named files by name up to AHE_PER_CLASS."""
    by_md5: dict[str, list[str]] = defaultdict(list)
    for path in sorted(src.rglob("*.jpg")):
        by_md5[hashlib.md5(path.read_bytes()).hexdigest()].append(path.relative_to(src).as_posix())
    duplicates = {rel for group in by_md5.values() if len(group) > 1 for rel in group}
    for cls in AHE_CLASSES:
        names = sorted(p.relative_to(src).as_posix() for p in (src / cls).glob("*.jpg"))
        chosen = [n for n in names if n in duplicates or n == GRAYSCALE]
        chosen += [n for n in names if not n.isascii()][:NON_ASCII_PER_CLASS]
        chosen += [n for n in names if n.isascii() and n not in chosen][
            : max(0, AHE_PER_CLASS - len(chosen))
        ]
        for rel in chosen:
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / rel, dst / rel)


def artgan_excerpt(src: Path, dst: Path) -> None:
    """Class files whole; each list's header lines, its first ARTGAN_HEAD rows and the first
    ARTGAN_PER_QUIRK rows of each quirk, in their original order."""
    dst.mkdir(parents=True, exist_ok=True)
    for path in sorted(src.iterdir()):
        if "_class" in path.name:
            shutil.copyfile(path, dst / path.name)
            continue
        if not ("_train" in path.name or "_val" in path.name):
            continue
        lines = path.read_bytes().splitlines(keepends=True)
        header = 2 if lines[0].startswith(b"(Path") else 0  # artist lists: header + blank line
        keep = set(range(header + ARTGAN_HEAD))
        for quirk in ARTGAN_QUIRKS:
            hits = [i for i in range(header, len(lines)) if quirk in lines[i]]
            keep.update(hits[:ARTGAN_PER_QUIRK])
        (dst / path.name).write_bytes(b"".join(lines[i] for i in sorted(keep)))


def main(shared: Path) -> None:
    for name in ("ahe_excerpt", "wikiart_artgan_excerpt"):
        shutil.rmtree(HERE / name, ignore_errors=True)
    ahe_excerpt(shared / "ahe64" / "train_val", HERE / "ahe_excerpt")
    artgan_excerpt(shared / "metadata" / "wikiart_artgan", HERE / "wikiart_artgan_excerpt")
    shutil.copyfile(
        shared / "metadata" / "rijksmuseum_example_metadata.csv",
        HERE / "rijksmuseum_example_metadata.csv",
    )


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data"))
