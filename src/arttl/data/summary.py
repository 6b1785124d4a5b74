"""Terminal summaries of a prepared store (rich tables)."""

from __future__ import annotations

from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table


def print_store_summary(summary: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    if summary.get("reused"):
        console.print(
            f"[green]store is current[/green]: {summary['store']} (force=true rebuilds it)"
        )
        return
    console.print(f"prepared [bold]{summary['store']}[/bold]")
    table = Table()
    for col in ("split", "images"):
        table.add_column(col)
    for split, n in summary["counts"].items():
        table.add_row(split, str(n))
    console.print(table)
    console.print(f"{summary['num_classes']} classes")
    rejected: pd.DataFrame = summary["rejected"]
    if len(rejected):
        reasons = rejected["reason"].str.split(":").str[0].value_counts()
        listing = ", ".join(f"{n} {reason}" for reason, n in reasons.items())
        console.print(
            f"[yellow]rejected {len(rejected)} file(s)[/yellow] ({listing}); see "
            f"{summary['store']}/rejected.csv"
        )
    else:
        console.print("rejected 0 files")
    if summary.get("dropped_classes"):
        dropped = summary["dropped_classes"]
        console.print(
            f"[yellow]dropped {len(dropped)} class(es) too small for every split[/yellow]: "
            + ", ".join(map(str, dropped[:20]))
            + (" …" if len(dropped) > 20 else "")
        )
