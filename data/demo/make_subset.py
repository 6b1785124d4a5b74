"""Rebuild data/demo/paintings and data/demo/objects from the shared collections (provenance).

    python data/demo/make_subset.py ../shared/data

Within each class folder: the files sorted by name, every (n/PER_CLASS)-th one
(``int(i * n / PER_CLASS)``), resized from 224 to SIDE px (Lanczos) and saved as JPEG quality 90.
Class folder names are kept as they are in the shared collections.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

PER_CLASS = 40
SIDE = 128
SETS = {"paintings": "wikiart224/train_val", "objects": "egypt224/train_val"}


def main(shared: Path) -> None:
    out_root = Path(__file__).resolve().parent
    for name, rel in SETS.items():
        src_root = shared / rel
        for cls in sorted(p.name for p in src_root.iterdir() if p.is_dir()):
            files = sorted((src_root / cls).glob("*.jpg"))
            chosen = [files[int(i * len(files) / PER_CLASS)] for i in range(PER_CLASS)]
            dst = out_root / name / cls
            dst.mkdir(parents=True, exist_ok=True)
            for path in chosen:
                img = Image.open(path).convert("RGB").resize((SIDE, SIDE), Image.Resampling.LANCZOS)
                img.save(dst / path.name, quality=90)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data"))
