"""`python -m arttl.report <runs folder> [...]`: the paper's Tables 2–3, a full CSV and curves."""

from __future__ import annotations

import logging
import sys

import hydra
import pandas as pd
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, ListConfig
from rich.console import Console
from rich.table import Table

from arttl.cli import USER_ERROR_EXIT, display_path, output_console, run_entry_point, user_errors
from arttl.config import CONF_DIR
from arttl.reporting.runs import (
    MULTITASK_EXPLANATION,
    MULTITASK_TITLE,
    TABLES,
    Report,
    cell_explanation,
    difference_unit,
    differences_title,
    make_report,
    plural,
    runs_text,
)
from arttl.reporting.tables import (
    CellTable,
    differences_rows,
    multitask_display_rows,
    rich_rows,
)

log = logging.getLogger("arttl.report")

# Hydra flags whose next argument is their value, not a runs folder.
_FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name"}
_FLAGS_WITH_VALUE |= {"-cn", "--config-dir", "-cd", "--experimental-rerun"}


def positional_to_runs(argv: list[str]) -> list[str]:
    """Turn bare folder arguments into one ``runs=[...]`` override (Hydra rejects bare args)."""
    out, folders, takes_value = [argv[0]], [], False
    for arg in argv[1:]:
        if takes_value or arg.startswith("-") or "=" in arg:
            out.append(arg)
            takes_value = arg in _FLAGS_WITH_VALUE
        else:
            folders.append(arg)
    if not folders:
        return out
    if any(a.split("=", 1)[0].lstrip("+~") == "runs" for a in out[1:] if "=" in a):
        print(
            "error: give runs folders either as arguments or as runs=[...], not both.",
            file=sys.stderr,
        )
        sys.exit(USER_ERROR_EXIT)
    quoted = ["'" + f.replace("\\", "\\\\").replace("'", "\\'") + "'" for f in folders]
    return [*out, f"runs=[{','.join(quoted)}]"]


def _print_rows(
    console: Console, title: str, header: list[str], rows: list[list[str]], n_labels: int
) -> None:
    out = Table(title=title)
    for i, name in enumerate(header):
        numeric = i >= n_labels
        out.add_column(name, justify="right" if numeric else "left", overflow="fold")
    for row in rows:
        out.add_row(*row)
    console.print(out)


def print_table(
    console: Console, title: str, table: CellTable, decimals: int, higher: bool, show_init: bool
) -> None:
    header, rows = rich_rows(table, decimals, higher, show_init)
    _print_rows(console, title, header, rows, table.index.nlevels)


def print_differences(console: Console, diffs: pd.DataFrame, metric: str, decimals: int) -> None:
    """The paired differences (θ̂ − θ, multi-task − single-task, fine-tuning − off-the-shelf)
    with at least one pair."""
    from rich.markup import escape

    header, rows = differences_rows(diffs, decimals, difference_unit(metric), escape)
    if rows:
        _print_rows(console, f"{differences_title(diffs)} — {metric}", header, rows, 4)


def print_multitask(console: Console, report: Report, metric: str, decimals: int) -> None:
    """Each task of a multi-task run beside single-task runs, and each column's training time."""
    from rich.markup import escape

    table = report.multitask
    if table is None or table.empty:
        return
    higher = not metric.endswith("loss")
    header, rows = multitask_display_rows(
        table, report.training_time, decimals, higher, "[bold]{}[/bold]".format, escape
    )
    _print_rows(console, f"{MULTITASK_TITLE} — {metric}", header, rows, table.index.nlevels)
    console.print(MULTITASK_EXPLANATION, markup=False)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="report")
@user_errors
def _main(cfg: DictConfig) -> None:
    runs = cfg.runs
    runs = list(runs) if isinstance(runs, ListConfig | list | tuple) else [runs] if runs else []
    from arttl.errors import ConfigError

    if not runs:
        raise ConfigError(
            "no runs folder given: `python -m arttl.report multirun/<name>/<time>` or "
            "runs=[folder1,folder2]."
        )
    report = make_report(
        runs,
        out_dir=cfg.out_dir or HydraConfig.get().runtime.output_dir,  # a new folder per report
        metric=cfg.metric,
        decimals=int(cfg.decimals),
        curve_metric=cfg.curve_metric,
        curves=bool(cfg.curves),
    )
    console = output_console()
    higher = not str(cfg.metric).endswith("loss")
    console.print(cell_explanation(str(cfg.metric)), markup=False)
    for name, title in TABLES.items():
        if not report.tables[name].empty:
            print_table(
                console,
                f"{title} — {cfg.metric}",
                report.tables[name],
                int(cfg.decimals),
                higher,
                show_init=name == "table3",
            )
    print_multitask(console, report, str(cfg.metric), int(cfg.decimals))
    print_differences(console, report.differences, str(cfg.metric), int(cfg.decimals))
    for note in report.notes:
        console.print(f"note: {note}", markup=False)
    log.info(
        "%s -> %s in %s (report.md)",
        runs_text(report.runs),
        plural(len(report.files), "file"),
        display_path(report.out_dir),
    )


def main() -> None:
    sys.argv = positional_to_runs(sys.argv)
    _main()


def cli() -> None:
    """``arttl-report``, the same command as ``python -m arttl.report``."""
    run_entry_point(main)


if __name__ == "__main__":
    cli()
