"""Tables 2 and 3 from a synthetic sweep, against tables worked out by hand (tests/fixtures/sweep)."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pandas as pd
import pytest

from arttl.errors import ConfigError
from arttl.reporting.tables import best_mask, table2, table3, to_csv_frame, to_latex, to_markdown
from arttl.results import collect_results
from tests.fixtures.sweep import (
    TABLE2_CSV,
    TABLE2_MD,
    TABLE3_CSV,
    TABLE3_MD,
    make_sweep,
    markdown_cells,
)
from tests.fixtures.tiny_runs import results_record, write_run


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    return collect_results(make_sweep(tmp_path_factory.mktemp("sweep")))


def _csv(table: pd.DataFrame) -> str:
    buf = io.StringIO()
    to_csv_frame(table).to_csv(buf, index=False)
    return buf.getvalue()


def test_table2_matches_the_hand_made_table(runs: pd.DataFrame) -> None:
    table = table2(runs)
    assert _csv(table) == TABLE2_CSV
    # The missing run is NaN, not 0: nothing ever averages a hole into a number.
    assert math.isnan(table.loc[("rijksmuseum", "type", "resnet50"), ("fine_tune", "imagenet")])


def test_table3_puts_theta_and_theta_hat_side_by_side(runs: pd.DataFrame) -> None:
    assert _csv(table3(runs)) == TABLE3_CSV


def test_markdown_bolds_the_best_per_challenge_and_leaves_holes_empty(runs: pd.DataFrame) -> None:
    assert markdown_cells(to_markdown(table2(runs))) == TABLE2_MD
    assert markdown_cells(to_markdown(table3(runs), show_init=True)) == TABLE3_MD


def test_latex_is_booktabs_with_bold_best_and_empty_cells(runs: pd.DataFrame) -> None:
    latex = to_latex(table2(runs), caption="Table 2")
    for rule in (r"\toprule", r"\midrule", r"\bottomrule", r"\caption{Table 2}"):
        assert rule in latex
    rows = [ln.strip() for ln in latex.splitlines() if ln.rstrip().endswith(r"\\")]
    assert r"antwerp & type & resnet50 & 70.00 &  &  &  \\" in rows
    assert r" &  & vgg19 & 60.00 & \textbf{71.00} &  & 30.00 \\".strip() in rows
    assert latex.count(r"\textbf{") == 3  # one best per challenge
    cells = [c.strip() for row in rows[1:] for c in row.removesuffix(r"\\").split("&")[3:]]
    assert "" in cells and not {"nan", "NaN", "0.00"} & set(cells)
    assert r"Partial fine-tuning" in latex and "test_resnet" not in latex


def test_latex_table3_has_theta_under_each_mode(runs: pd.DataFrame) -> None:
    latex = to_latex(table3(runs), two_level_header=True)
    assert r"\multicolumn{2}{c}{Off-the-shelf} & \multicolumn{2}{c}{Fine-tuning}" in latex
    assert latex.count(r"$\hat{\theta}$") == 2 and r"\textbf{85.00}" in latex


def test_lower_is_better_for_loss(tmp_path: Path) -> None:
    write_run(tmp_path / "0", results_record(mode="off_the_shelf", test={"loss": 0.9}))
    write_run(tmp_path / "1", results_record(mode="fine_tune", test={"loss": 0.4}))
    table = table2(collect_results(tmp_path), "test_loss")
    assert table.iloc[0].tolist() == [0.9, 0.4]  # losses are not scaled to percent
    assert best_mask(table, higher_is_better=False).iloc[0].tolist() == [False, True]
    assert "**0.40**" in to_markdown(table, higher_is_better=False)


def test_unknown_metric_lists_the_choices(runs: pd.DataFrame) -> None:
    with pytest.raises(ConfigError, match=r"metric='test_top7'.*test_top5"):
        table2(runs, "test_top7")


def test_paper_columns_exist_even_when_no_run_used_them(tmp_path: Path) -> None:
    write_run(tmp_path / "0", results_record(mode="partial"))
    table = table2(collect_results(tmp_path))
    assert list(table.columns) == [
        ("off_the_shelf", "imagenet"),
        ("fine_tune", "imagenet"),
        ("partial", "imagenet"),
    ]
    assert table.iloc[0].isna().tolist() == [True, True, False]
    assert table3(collect_results(tmp_path)).empty  # no θ̂ run, no Table 3
