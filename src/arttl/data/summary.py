"""Terminal summaries of a prepared store (rich tables)."""

from __future__ import annotations

from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

from arttl.cli import output_console


def print_store_summary(summary: dict[str, Any], console: Console | None = None) -> None:
    """What prepare did, in the words a user checks first: reused or rebuilt (why), counts,
    what was left out (rejects, duplicates, the per-class cap, dropped classes)."""
    console = console or output_console()
    if summary.get("unverified"):
        console.print(
            f"[yellow]using the prepared store without checking its source[/yellow] "
            f"(store.check_source=false): {summary['store']}"
        )
        return
    if summary.get("reused"):
        console.print(
            f"[green]store is current[/green] (same source files and settings): "
            f"{summary['store']} (force=true rebuilds it)"
        )
        return
    if summary.get("rebuilt_because"):
        console.print(
            f"[yellow]rebuilding {summary['store']}[/yellow]: {summary['rebuilt_because']}"
        )
    console.print(f"prepared [bold]{summary['store']}[/bold]")
    table = Table()
    for col in ("split", "images"):
        table.add_column(col)
    for split, n in summary["counts"].items():
        table.add_row(split, str(n))
    console.print(table)
    if summary.get("tasks"):
        _print_tasks(summary["tasks"], console)
    else:
        console.print(f"{summary['num_classes']} classes")
    _print_rejects_and_duplicates(summary, console)
    if summary.get("capped_rows"):
        console.print(
            f"{summary['capped_rows']} image(s) left out by store.max_per_class "
            "(a seeded subset of each larger class)"
        )
    extra = summary.get("split_attrs") or {}
    if summary.get("split_by") == "group":
        console.print(
            "split by group: every group in one split"
            + (
                f"; {extra['mixed_label_groups']} group(s) hold several classes"
                if extra.get("mixed_label_groups")
                else ""
            )
            + (
                f"; {extra['ungrouped_rows']} image(s) without a group, each its own group"
                if extra.get("ungrouped_rows")
                else ""
            )
        )
    if summary.get("dropped_classes") and not summary.get("tasks"):
        dropped = summary["dropped_classes"]
        console.print(
            f"[yellow]dropped {len(dropped)} class(es) too small for every split[/yellow]: "
            + ", ".join(map(str, dropped[:20]))
            + (" …" if len(dropped) > 20 else "")
        )


def _print_tasks(tasks: dict[str, dict[str, Any]], console: Console) -> None:
    """Several tasks: each one's classes, labelled images per split and dropped classes."""
    table = Table(title="tasks (labelled images per split; the others are masked)")
    for col in ("task", "classes", "train", "val", "test", "dropped (too small for every split)"):
        table.add_column(col)
    for task, info in tasks.items():
        dropped = info["dropped"]
        text = ", ".join(map(str, dropped[:8])) + (" …" if len(dropped) > 8 else "")
        counts = [str(info["labelled"][s]) for s in ("train", "val", "test")]
        table.add_row(
            task, str(info["classes"]), *counts, f"{len(dropped)}: {text}" if dropped else "none"
        )
    console.print(table)


def _print_rejects_and_duplicates(summary: dict[str, Any], console: Console) -> None:
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
    duplicates = summary.get("duplicates")
    if duplicates is not None and len(duplicates):
        clusters = duplicates["cluster"].nunique()
        console.print(
            f"{len(duplicates)} images are exact duplicates ({clusters} "
            f"{'set' if clusters == 1 else 'sets'} of identical "
            f"pixels); each set is kept in one split — see {summary['store']}/duplicates.csv"
        )
    else:
        console.print("0 duplicate images")
