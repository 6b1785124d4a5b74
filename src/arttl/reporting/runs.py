"""``report``'s work: runs folders in, paper tables, full CSV and learning curves out."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from arttl.atomic import atomic_path, write_text_atomic
from arttl.reporting.curves import plot_learning_curves
from arttl.reporting.tables import latex_escape, table2, table3, to_csv_frame, to_latex, to_markdown
from arttl.results import collect_results

TABLES = {
    "table2": "Table 2: off-the-shelf versus fine-tuning (ImageNet initialisation θ)",
    "table3": "Table 3: ImageNet (θ) versus art-tuned (θ̂) initialisation",
}
TABLES_LATEX = {
    "table2": r"Off-the-shelf versus fine-tuning (ImageNet initialisation $\theta$)",
    "table3": r"ImageNet ($\theta$) versus art-tuned ($\hat{\theta}$) initialisation",
}


@dataclass
class Report:
    runs: pd.DataFrame
    tables: dict[str, pd.DataFrame]
    out_dir: Path
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def default_out_dir(folders: Iterable[str | Path]) -> Path:
    """``<first runs folder>/report`` (beside the results.json when a file was given)."""
    first = Path(next(iter(folders)))
    return (first.parent if first.is_file() else first) / "report"


def _render_all(
    tables: dict[str, pd.DataFrame], metric: str, decimals: int
) -> dict[str, str | pd.DataFrame]:
    higher = not metric.endswith("loss")
    unit = "" if not higher else " (%)"
    rendered: dict[str, str | pd.DataFrame] = {}
    for name, table in tables.items():
        if table.empty:
            continue
        caption = (
            f"{TABLES_LATEX[name]}; {latex_escape(metric + unit)}, best per challenge in bold."
        )
        rendered[f"{name}.csv"] = to_csv_frame(table, decimals)
        rendered[f"{name}.md"] = to_markdown(table, decimals, higher, show_init=name == "table3")
        rendered[f"{name}.tex"] = to_latex(
            table, decimals, higher, caption=caption, two_level_header=name == "table3"
        )
    return rendered


def _summary(report: Report, metric: str, rendered: dict, curves: list[Path]) -> str:
    lines = [
        "# arttl report",
        "",
        f"{len(report.runs)} runs; cells: {metric}"
        + ("" if metric.endswith("loss") else " in %")
        + ", mean over the runs in the cell; best per challenge in **bold**; "
        "empty = not run. All runs: [runs.csv](runs.csv).",
        "",
    ]
    for name, title in TABLES.items():
        if f"{name}.md" not in rendered:
            continue
        lines += [
            f"## {title}",
            "",
            rendered[f"{name}.md"],
            f"[CSV]({name}.csv) · [LaTeX]({name}.tex)",
            "",
        ]
    if curves:
        lines += ["## Learning curves", ""]
        lines += [f"![{p.stem}]({p.name})" for p in curves]
        lines.append("")
    if report.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in report.notes] + [""]
    return "\n".join(lines)


def make_report(
    folders: Iterable[str | Path],
    out_dir: str | Path | None = None,
    metric: str = "test_top1",
    decimals: int = 2,
    curve_metric: str = "val/top1",
    curves: bool = True,
) -> Report:
    """Read every results.json under ``folders`` and write the tables, CSV and curves.

    Everything that can fail on bad input (unreadable results, unknown metric) fails before the
    first file is written, and each file is written atomically, so no table is ever half there.
    """
    folders = [Path(f) for f in folders]
    runs = collect_results(folders)
    out = Path(out_dir) if out_dir else default_out_dir(folders)
    tables = {"table2": table2(runs, metric), "table3": table3(runs, metric)}
    report = Report(runs=runs, tables=tables, out_dir=out)
    rendered = _render_all(tables, metric, decimals)
    if tables["table3"].empty:
        report.notes.append("No run started from an arttl checkpoint (θ̂), so there is no Table 3.")
    cell_counts = runs.groupby(["dataset", "challenge", "backbone", "mode", "init"]).size()
    if (cell_counts > 1).any():
        report.notes.append(
            f"{int((cell_counts > 1).sum())} cells average several runs (seeds or repeats); "
            "runs.csv lists each run."
        )

    runs_csv = out / "runs.csv"
    with atomic_path(runs_csv) as tmp:
        runs.to_csv(tmp, index=False)
    report.files.append(runs_csv)
    for name, content in rendered.items():
        path = out / name
        if isinstance(content, pd.DataFrame):
            with atomic_path(path) as tmp:
                content.to_csv(tmp, index=False)
        else:
            write_text_atomic(path, content)
        report.files.append(path)
    written: list[Path] = []
    if curves:
        written, missing = plot_learning_curves(runs, out, curve_metric)
        report.files += written
        if missing:
            report.notes.append(
                f"{len(missing)} runs have no {curve_metric} history (metrics.csv) and are not "
                f"in the curves: {', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else "")
            )
    summary = out / "report.md"
    write_text_atomic(summary, _summary(report, metric, rendered, written))
    report.files.append(summary)
    return report
