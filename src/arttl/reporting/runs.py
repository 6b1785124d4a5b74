"""``report``'s work: runs folders in, paper tables, full CSV and learning curves out."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from arttl.atomic import atomic_path, write_text_atomic
from arttl.reporting.cells import CELL_COLUMNS, LABEL_COLUMNS, label_runs, multitask_rows, run_count
from arttl.reporting.curves import plot_learning_curves
from arttl.reporting.tables import (
    MULTI_MINUS_SINGLE,
    CellTable,
    check_metric,
    differences,
    differences_csv_frame,
    differences_markdown,
    latex_escape,
    multitask_csv_frame,
    multitask_markdown,
    multitask_table,
    table2,
    table3,
    to_csv_frame,
    to_latex,
    to_markdown,
    training_time,
)
from arttl.results import DUPLICATES_ATTR, IDENTITY_COLUMNS, collect_results

TABLES = {
    "table2": "Table 2: off-the-shelf versus fine-tuning (ImageNet initialisation θ)",
    "table3": "Table 3: ImageNet (θ) versus art-tuned (θ̂) initialisation",
}
TABLES_LATEX = {
    "table2": r"Off-the-shelf versus fine-tuning (ImageNet initialisation $\theta$)",
    "table3": r"ImageNet ($\theta$) versus art-tuned ($\hat{\theta}$) initialisation",
}
DIFFERENCES_TITLE = "Paired differences: θ̂ − θ and fine-tuning − off-the-shelf, per seed"
MULTITASK_DIFFERENCES_TITLE = (
    "Paired differences: θ̂ − θ, multi-task − single-task and fine-tuning − off-the-shelf, per seed"
)


def differences_title(diffs: pd.DataFrame) -> str:
    """The differences' title, naming multi-task − single-task only when there is such a row."""
    several = "kind" in diffs and (diffs["kind"] == MULTI_MINUS_SINGLE).any()
    return MULTITASK_DIFFERENCES_TITLE if several else DIFFERENCES_TITLE


MULTITASK_TITLE = "Multi-task versus single-task networks, per task"
MULTITASK_EXPLANATION = (
    "Each task that a multi-task run trained (one network, one head per task) beside the "
    "single-task runs of that task with the same mode and initialisation; cells as above. Last "
    "row: the total training time (wall_seconds) of each column's runs, a multi-task run counted "
    "once (it trains all its tasks at once)."
)


@dataclass
class Report:
    runs: pd.DataFrame
    tables: dict[str, CellTable]
    out_dir: Path
    differences: pd.DataFrame = field(default_factory=pd.DataFrame)
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # each task of a multi-task run beside single-task runs (None: no multi-task run)
    multitask: CellTable | None = None
    training_time: pd.DataFrame = field(default_factory=pd.DataFrame)  # per multitask column


def runs_text(runs: pd.DataFrame) -> str:
    """``12 runs``, or ``4 runs (8 rows: a multi-task run has one row per task)``."""
    count = run_count(runs)
    if count == len(runs):
        return plural(count, "run")
    return f"{plural(count, 'run')} ({len(runs)} rows: a multi-task run has one row per task)"


def plural(count: int, one: str, many: str | None = None) -> str:
    """``1 run``, ``3 runs``."""
    return f"{count} {one if count == 1 else (many or one + 's')}"


def cell_explanation(metric: str) -> str:
    """One line saying what a table cell is."""
    unit = "" if metric.endswith("loss") else " in %"
    return (
        f"Each cell: {metric}{unit}, mean ± sample standard deviation (ddof=1) over the n runs "
        "(seeds) of one configuration, e.g. 71.00 ± 1.41 (n=2); a single run shows its value "
        "and (n=1), without ±. Best mean per challenge in bold; empty = not run."
    )


def difference_unit(metric: str) -> str:
    return "" if metric.endswith("loss") else " (pp)"


def default_out_dir(folders: Iterable[str | Path]) -> Path:
    """``<first runs folder>/report`` (beside the results.json when a file was given)."""
    first = Path(next(iter(folders)))
    return (first.parent if first.is_file() else first) / "report"


def _render_all(
    tables: dict[str, CellTable], diffs: pd.DataFrame, metric: str, decimals: int
) -> dict[str, str | pd.DataFrame]:
    higher = not metric.endswith("loss")
    unit = "" if not higher else " (%)"
    rendered: dict[str, str | pd.DataFrame] = {}
    for name, table in tables.items():
        if table.empty:
            continue
        caption = (
            f"{TABLES_LATEX[name]}; {latex_escape(metric + unit)}, mean $\\pm$ sample standard "
            "deviation over $n$ seeds, best mean per challenge in bold."
        )
        rendered[f"{name}.csv"] = to_csv_frame(table, decimals)
        rendered[f"{name}.md"] = to_markdown(table, decimals, higher, show_init=name == "table3")
        rendered[f"{name}.tex"] = to_latex(
            table, decimals, higher, caption=caption, two_level_header=name == "table3"
        )
    if (diffs["n"] > 0).any():
        rendered["differences.csv"] = differences_csv_frame(diffs, decimals)
        rendered["differences.md"] = differences_markdown(diffs, decimals, difference_unit(metric))
    return rendered


def _render_multitask(report: Report, metric: str, decimals: int) -> dict[str, str | pd.DataFrame]:
    """multitask.md and multitask.csv, only when some run trained several tasks at once."""
    table, time = report.multitask, report.training_time
    if table is None or table.empty:
        return {}
    higher = not metric.endswith("loss")
    return {
        "multitask.csv": multitask_csv_frame(table, time, decimals),
        "multitask.md": multitask_markdown(table, time, decimals, higher),
    }


def _summary(report: Report, metric: str, rendered: dict, curves: list[Path]) -> str:
    lines = [
        "# arttl report",
        "",
        f"{runs_text(report.runs)}. "
        + cell_explanation(metric).replace(
            "Best mean per challenge in bold", "Best mean per challenge in **bold**"
        )
        + " All runs: [runs.csv](runs.csv).",
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
    if "multitask.md" in rendered:
        lines += [f"## {MULTITASK_TITLE}", "", MULTITASK_EXPLANATION, "", rendered["multitask.md"]]
        lines += ["[CSV](multitask.csv)", ""]
    if "differences.md" in rendered:
        unit = "percentage points" if not metric.endswith("loss") else "units of " + metric
        lines += [
            f"## {differences_title(report.differences)}",
            "",
            f"Runs paired by seed (only seeds run on both sides); {metric} difference in {unit}, "
            "mean ± sample standard deviation over the n paired seeds.",
            "",
            rendered["differences.md"],
            "[CSV](differences.csv)",
            "",
        ]
    if curves:
        lines += ["## Learning curves", ""]
        lines += [f"![{p.stem}]({p.name})" for p in curves]
        lines.append("")
    if report.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in report.notes] + [""]
    return "\n".join(lines)


def _runs_csv_frame(runs: pd.DataFrame) -> pd.DataFrame:
    first = [c for c in (*IDENTITY_COLUMNS, *LABEL_COLUMNS) if c in runs]
    return runs[first + [c for c in runs.columns if c not in first]]


def _notes(report: Report, duplicates: list[str], label_notes: list[str]) -> None:
    runs, notes = report.runs, report.notes
    if duplicates:
        notes.append(
            f"{plural(len(duplicates), 'duplicate copy', 'duplicate copies')} of "
            f"{'a run' if len(duplicates) == 1 else 'runs'} ignored (same run_id as a run "
            f"already counted): {', '.join(duplicates)}"
        )
    notes += label_notes
    if report.tables["table3"].empty:
        notes.append("No run started from an arttl checkpoint (θ̂), so there is no Table 3.")
    cell_counts = runs.groupby(list(CELL_COLUMNS)).size()
    several = int((cell_counts > 1).sum())
    if several:
        notes.append(
            f"{plural(several, 'cell')} average{'s' if several == 1 else ''} several runs (seeds) "
            "of one configuration; runs.csv lists each run."
        )
    partial = _partly_evaluated(runs)
    if partial:
        notes.append(
            f"{plural(len(partial), 'run')} {'has' if len(partial) == 1 else 'have'} val/test "
            "numbers on part of the split only (trainer.limit_val_batches / limit_test_batches; "
            f"runs.csv: evaluated_* against samples_*): {', '.join(partial)}"
        )
    for _, row in report.differences[report.differences["n"] == 0].iterrows():
        notes.append(
            f"{row['dataset']} / {row['challenge']} / {row['backbone']}, {row['comparison']}: "
            f"no seed was run on both sides ({row['unpaired']}), so there is no paired "
            "difference."
        )


def _partly_evaluated(runs: pd.DataFrame) -> list[str]:
    """The run folders whose results.json says its val/test metrics saw fewer images than the
    split holds (``evaluated``, written since arttl records it)."""
    short = pd.Series(False, index=runs.index)
    for split in ("val", "test"):
        seen, size = f"evaluated_{split}", f"samples_{split}"
        if seen in runs and size in runs:
            short |= runs[seen].notna() & (runs[seen] < runs[size])
    return list(dict.fromkeys(runs.loc[short, "run_dir"].astype(str)))


def _write(out: Path, rendered: dict[str, str | pd.DataFrame], runs: pd.DataFrame) -> list[Path]:
    """runs.csv and every rendered file, each written atomically; returns their paths."""
    runs_csv = out / "runs.csv"
    with atomic_path(runs_csv) as tmp:
        _runs_csv_frame(runs).to_csv(tmp, index=False)
    files = [runs_csv]
    for name, content in rendered.items():
        path = out / name
        if isinstance(content, pd.DataFrame):
            with atomic_path(path) as tmp:
                content.to_csv(tmp, index=False)
        else:
            write_text_atomic(path, content)
        files.append(path)
    return files


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
    duplicates = list(runs.attrs.get(DUPLICATES_ATTR, []))
    check_metric(runs, metric)
    runs, label_notes = label_runs(runs)
    out = Path(out_dir) if out_dir else default_out_dir(folders)
    tables = {"table2": table2(runs, metric), "table3": table3(runs, metric)}
    report = Report(runs=runs, tables=tables, out_dir=out, differences=differences(runs, metric))
    if multitask_rows(runs).any():
        report.multitask = multitask_table(runs, metric)
        report.training_time = training_time(runs, report.multitask)
    rendered = _render_all(tables, report.differences, metric, decimals)
    rendered.update(_render_multitask(report, metric, decimals))
    _notes(report, duplicates, label_notes)

    report.files += _write(out, rendered, runs)
    written: list[Path] = []
    if curves:
        written, missing = plot_learning_curves(runs, out, curve_metric)
        report.files += written
        if missing:
            report.notes.append(
                f"{plural(len(missing), 'run')} {'has' if len(missing) == 1 else 'have'} no "
                f"{curve_metric} history (metrics.csv) and {'is' if len(missing) == 1 else 'are'} "
                f"not in the curves: {', '.join(missing[:5])}"
                + (" ..." if len(missing) > 5 else "")
            )
    summary = out / "report.md"
    write_text_atomic(summary, _summary(report, metric, rendered, written))
    report.files.append(summary)
    return report
