"""Refresh the files docs/results.md includes, so its numbers are always the files arttl wrote.

The page is hand-written prose with include blocks:

    <!-- include results/objects/report.md -->
    ... (replaced by the file's content) ...
    <!-- end include -->

A ``.md`` file (an ``arttl.report`` report) is included with its headings moved two levels down
and its relative links and images pointed at its folder; a ``.csv`` file (saliency agreement,
step durations) is rendered as a table, optionally ``columns=a,b,c`` only. ``--check`` changes
nothing and exits 1 when the page differs from what the files give (a stale page is a bug).
Written by hand: no library splices files into Markdown.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import pandas as pd

BLOCK = re.compile(
    r"(<!-- include (?P<file>\S+)(?: columns=(?P<columns>\S+))? -->\n)(?P<body>.*?)(<!-- end include -->)",
    re.S,
)
LINK = re.compile(r"(!?\[[^\]]*\]\()(?!https?://|/|#)([^)]+)\)")


def render_markdown(path: Path, prefix: str) -> str:
    """A report's Markdown, nested under the page's headings, its links relative to the page."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            line = "##" + line
        lines.append(LINK.sub(lambda m: f"{m.group(1)}{prefix}/{m.group(2)})", line))
    return "\n".join(lines).strip() + "\n"


def render_csv(path: Path, columns: list[str] | None) -> str:
    table = pd.read_csv(path)
    if columns:
        missing = [c for c in columns if c not in table.columns]
        if missing:
            raise SystemExit(f"{path}: no column(s) {missing}; columns: {list(table.columns)}")
        table = table[columns]
    text = table.to_markdown(index=False, floatfmt=".3f")
    if path.name == "durations.csv":
        total = table["seconds"].sum()
        text += f"\n\nTotal: {total:,} s = {total / 3600:.2f} h (sum of the steps above)."
    return text + "\n"


def render(page: Path, results: Path) -> str:
    """The page with every include block's body replaced by its file's current content."""
    text = page.read_text(encoding="utf-8")

    def fill(m: re.Match[str]) -> str:
        rel = m.group("file")
        path = page.parent / rel
        if not path.is_file():
            raise SystemExit(
                f"{page}: includes {rel}, which does not exist (results folder: {results}); "
                "run `make reproduce` to write it."
            )
        cols = m.group("columns")
        body = (
            render_csv(path, cols.split(",") if cols else None)
            if path.suffix == ".csv"
            else render_markdown(path, str(Path(rel).parent))
        )
        return f"{m.group(1)}{body}{m.group(5)}"

    return BLOCK.sub(fill, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--page", type=Path, default=Path("docs/results.md"))
    parser.add_argument("--results", type=Path, default=Path("docs/results"))
    parser.add_argument("--check", action="store_true", help="exit 1 if the page is stale")
    args = parser.parse_args(argv)
    new = render(args.page, args.results)
    if args.check:
        if new != args.page.read_text(encoding="utf-8"):
            print(f"{args.page} is stale: rebuild it with python {sys.argv[0]}", file=sys.stderr)
            return 1
        print(f"{args.page}: every include block matches its file")
        return 0
    args.page.write_text(new, encoding="utf-8")
    print(f"wrote {args.page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
