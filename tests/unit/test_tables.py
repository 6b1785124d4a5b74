"""Tables 2 and 3 from a synthetic sweep, against tables worked out by hand (tests/fixtures/sweep)."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pandas as pd
import pytest

from arttl.errors import ConfigError
from arttl.reporting.cells import label_runs, short_paths
from arttl.reporting.tables import (
    best_mask,
    cell_text,
    differences,
    differences_markdown,
    table2,
    table3,
    to_csv_frame,
    to_latex,
    to_markdown,
)
from arttl.results import collect_results
from tests.fixtures.sweep import (
    DIFFERENCES,
    TABLE2_CSV,
    TABLE2_MD,
    TABLE3_CSV,
    TABLE3_MD,
    make_sweep,
    markdown_cells,
)
from tests.fixtures.tiny_runs import results_record, write_run

THETA_HAT = "checkpoints/rijks_type/resnet50-fine_tune.ckpt"


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
    cell = (("rijksmuseum", "type", "resnet50"), ("fine_tune", "imagenet"))
    assert math.isnan(table.mean.loc[cell]) and math.isnan(table.n.loc[cell])
    two_seeds = (("rijksmuseum", "type", "vgg19"), ("fine_tune", "imagenet"))
    assert table.n.loc[two_seeds] == 2 and table.std.loc[two_seeds] == pytest.approx(2**0.5)


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
    assert r"antwerp & type & resnet50 & 70.00 (n=1) &  &  &  \\" in rows
    assert r"&  & vgg19 & 60.00 (n=1) & \textbf{71.00} $\pm$ 1.41 (n=2) &  & 30.00 (n=1) \\" in rows
    assert latex.count(r"\textbf{") == 3  # one best per challenge
    cells = [c.strip() for row in rows[1:] for c in row.removesuffix(r"\\").split("&")[3:]]
    assert "" in cells and not {"nan", "NaN", "0.00"} & set(cells)
    assert not [c for c in cells if "(n=1)" in c and r"\pm" in c]  # one run: no fake ± 0
    assert r"Partial fine-tuning" in latex and "test_resnet" not in latex


def test_latex_table3_has_theta_under_each_mode(runs: pd.DataFrame) -> None:
    latex = to_latex(table3(runs), two_level_header=True)
    assert r"\multicolumn{2}{c}{Off-the-shelf} & \multicolumn{2}{c}{Fine-tuning}" in latex
    assert latex.count(r"$\hat{\theta}$") == 2 and r"\textbf{85.00} (n=1)" in latex


def test_lower_is_better_for_loss(tmp_path: Path) -> None:
    write_run(tmp_path / "0", results_record(mode="off_the_shelf", test={"loss": 0.9}))
    write_run(tmp_path / "1", results_record(mode="fine_tune", test={"loss": 0.4}))
    table = table2(collect_results(tmp_path), "test_loss")
    assert table.mean.iloc[0].tolist() == [0.9, 0.4]  # losses are not scaled to percent
    assert best_mask(table, higher_is_better=False).iloc[0].tolist() == [False, True]
    assert "**0.40** (n=1)" in to_markdown(table, higher_is_better=False)


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
    assert table.mean.iloc[0].isna().tolist() == [True, True, False]
    assert table3(collect_results(tmp_path)).empty  # no θ̂ run, no Table 3


def test_identified_sweep_gives_the_same_tables_as_an_old_one(tmp_path: Path) -> None:
    """Files with run_id/identity (seeds of one setting share identity_hash) change nothing."""
    runs = collect_results(make_sweep(tmp_path, identified=True))
    assert runs["run_id"].notna().all() and not runs["identity_derived"].any()
    assert _csv(table2(runs)) == TABLE2_CSV and _csv(table3(runs)) == TABLE3_CSV
    assert markdown_cells(to_markdown(table2(runs))) == TABLE2_MD
    assert label_runs(runs)[1] == []  # nothing to separate, nothing to explain


def _seeds(root: Path, values: list[float], identity: dict | None = None, **record) -> None:
    for seed, top1 in enumerate(values, start=1):
        name = f"{record.get('mode', 'fine_tune')}-{record.get('weights', 'imagenet')}-{seed}"
        rec = results_record(identity=identity, seed=seed, test={"top1": top1}, **record)
        write_run(root / name.replace("/", "_"), rec)


def test_three_seeds_show_mean_and_sample_std(tmp_path: Path) -> None:
    _seeds(tmp_path, [0.70, 0.72, 0.77], identity={})
    _seeds(tmp_path, [0.61], identity={}, mode="off_the_shelf")
    table = table2(collect_results(tmp_path))
    cell = (("rijksmuseum", "type", "resnet50"), ("fine_tune", "imagenet"))
    # by hand: mean 73; deviations -3, -1, +4 -> (9 + 1 + 16) / (3 - 1) = 13 -> std sqrt(13)
    assert table.mean.loc[cell] == pytest.approx(73.0)
    assert table.std.loc[cell] == pytest.approx(math.sqrt(13))
    assert table.n.loc[cell] == 3
    md = markdown_cells(to_markdown(table))
    assert md[1][3:5] == ["61.00 (n=1)", "**73.00** ± 3.61 (n=3)"]  # n=1: no ±, no fake 0
    csv = pd.read_csv(io.StringIO(_csv(table)))
    assert csv.loc[0, "fine_tune/imagenet"] == 73.0
    assert csv.loc[0, "fine_tune/imagenet_std"] == 3.61 and csv.loc[0, "fine_tune/imagenet_n"] == 3
    assert math.isnan(csv.loc[0, "off_the_shelf/imagenet_std"])  # empty, not 0
    assert csv.loc[0, "off_the_shelf/imagenet_n"] == 1
    assert r"\textbf{73.00} $\pm$ 3.61 (n=3)" in to_latex(table)
    assert r"61.00 (n=1)" in to_latex(table)


def test_cell_text() -> None:
    assert cell_text(71.0, 2**0.5, 2) == "71.00 ± 1.41 (n=2)"
    assert cell_text(70.0, float("nan"), 1) == "70.00 (n=1)"
    assert cell_text(70.0, 0.0, 1) == "70.00 (n=1)"  # never "± 0.00" for one run
    assert cell_text(float("nan"), float("nan"), float("nan")) == ""
    assert cell_text(3.0, 2.0, 3, signed=True) == "+3.00 ± 2.00 (n=3)"


def test_paired_differences_pair_by_seed(tmp_path: Path) -> None:
    _seeds(tmp_path, [0.70, 0.72, 0.77], identity={})  # θ, seeds 1-3
    _seeds(tmp_path, [0.75, 0.73, 0.80, 0.99], identity={}, weights=THETA_HAT)  # θ̂, seeds 1-4
    diffs = differences(collect_results(tmp_path))
    row = diffs[diffs["kind"] == "theta_hat-theta"].iloc[0]
    # by hand: 75-70, 73-72, 80-77 = 5, 1, 3 -> mean 3; deviations 2, -2, 0 -> std sqrt(8/2) = 2
    assert row["comparison"] == "Fine-tuning: θ̂ − θ"
    assert row["mean"] == pytest.approx(3.0) and row["std"] == pytest.approx(2.0)
    assert row["n"] == 3 and row["seeds"] == "1, 2, 3"
    assert row["unpaired"] == "θ̂ only: seed 4"  # seed 4 has no θ run: not paired
    assert "| +3.00 ± 2.00 (n=3) |" in differences_markdown(diffs)


def test_fine_tune_minus_off_the_shelf_and_no_common_seed(tmp_path: Path) -> None:
    _seeds(tmp_path, [0.70, 0.80], identity={})  # fine-tuning seeds 1, 2
    write_run(
        tmp_path / "ots",
        results_record(identity={}, mode="off_the_shelf", seed=2, test={"top1": 0.5}),
    )
    write_run(tmp_path / "hat", results_record(identity={}, weights=THETA_HAT, seed=9))
    diffs = differences(collect_results(tmp_path)).set_index("kind")
    ft = diffs.loc["fine_tune-off_the_shelf"]
    assert ft["mean"] == pytest.approx(30.0) and ft["n"] == 1 and math.isnan(ft["std"])
    assert ft["unpaired"] == "Fine-tuning only: seed 1"
    hat = diffs.loc["theta_hat-theta"]  # θ̂ ran seed 9 only: nothing invented
    assert hat["n"] == 0 and math.isnan(hat["mean"])
    assert hat["unpaired"] == "θ̂ only: seed 9; θ only: seeds 1, 2"
    assert "Fine-tuning: θ̂ − θ" not in differences_markdown(differences(collect_results(tmp_path)))


def test_old_sweep_differences(runs: pd.DataFrame) -> None:
    diffs = differences(runs)
    got = [
        (r.dataset, r.challenge, r.backbone, r.comparison, round(r.mean, 6), r.n, r.seeds,
         r.unpaired)
        for r in diffs.itertuples()
    ]  # fmt: skip
    assert got == DIFFERENCES


def test_different_source_roots_are_two_datasets(tmp_path: Path) -> None:
    for name in ("ahe64", "egypt224"):
        root = {"source": {"root": f"/data/{name}/train_val", "fingerprint": name}}
        _seeds(tmp_path / name, [0.5, 0.6], identity=root, dataset="imagefolder", challenge="class")
    runs, notes = label_runs(collect_results(tmp_path))
    table = table2(runs)
    assert list(table.index) == [
        ("imagefolder (ahe64/train_val)", "class", "resnet50"),
        ("imagefolder (egypt224/train_val)", "class", "resnet50"),
    ]
    assert table.n.iloc[:, 1].tolist() == [2, 2]  # two seeds each, never four
    assert "/data/ahe64/train_val" in notes[0] and "/data/egypt224/train_val" in notes[0]
    assert best_mask(table).to_numpy().sum() == 2  # each collection has its own best


def test_different_input_sizes_are_two_rows(tmp_path: Path) -> None:
    for size in (32, 48):
        ident = {"preprocessing": {"input_size": [3, size, size]}}
        _seeds(tmp_path / str(size), [size / 100], identity=ident, backbone="resnet18")
    table = table2(collect_results(tmp_path))
    assert [r[2] for r in table.index] == ["resnet18 @32px", "resnet18 @48px"]
    assert table.mean.iloc[:, 1].tolist() == pytest.approx([32.0, 48.0])
    assert markdown_cells(to_markdown(table))[2][2] == "resnet18 @48px"


def test_different_weight_files_are_two_columns(tmp_path: Path) -> None:
    for name, top1 in (("a", 0.6), ("b", 0.7)):
        weights = f"/models/{name}.safetensors"
        _seeds(tmp_path / name, [top1], identity={}, weights=weights)
    runs, notes = label_runs(collect_results(tmp_path))
    table = table2(runs)
    file_columns = [c for c in table.columns if c[1].startswith("file")]
    assert file_columns == [
        ("fine_tune", "file (a.safetensors)"),
        ("fine_tune", "file (b.safetensors)"),
    ]
    header = markdown_cells(to_markdown(table))[0]
    assert "Fine-tuning (file a.safetensors)" in header
    assert "Fine-tuning (file b.safetensors)" in header
    assert "fine_tune/file (a.safetensors)_n" in _csv(table)
    assert any("/models/a.safetensors" in n and "/models/b.safetensors" in n for n in notes)


def test_old_records_with_different_weight_files_are_not_averaged(tmp_path: Path) -> None:
    for name, top1 in (("a", 0.6), ("b", 0.7)):
        _seeds(tmp_path / name, [top1], weights=f"/models/{name}.pth")  # no identity keys
    table = table2(collect_results(tmp_path))
    assert table.n.loc[:, ("fine_tune", "file (a.pth)")].tolist() == [1]
    assert table.n.loc[:, ("fine_tune", "file (b.pth)")].tolist() == [1]


def test_any_other_difference_is_a_variant_with_a_note(tmp_path: Path) -> None:
    _seeds(tmp_path / "sgd", [0.70, 0.72], identity={"mode": {"optimizer": "sgd"}})
    _seeds(tmp_path / "adam", [0.50], identity={"mode": {"optimizer": "adam"}})
    _seeds(tmp_path / "ots", [0.40], identity={}, mode="off_the_shelf")
    runs, notes = label_runs(collect_results(tmp_path))
    table = table2(runs)
    assert [r[2] for r in table.index] == ["resnet50", "resnet50 variant 2"]
    assert table.n.loc[:, ("fine_tune", "imagenet")].tolist() == [2, 1]
    assert len(notes) == 1
    assert "resnet50 variant 2 differs from variant 1" in notes[0]
    assert "mode.optimizer ('sgd' → 'adam')" in notes[0]


def test_an_old_and_a_new_record_are_never_merged(tmp_path: Path) -> None:
    _seeds(tmp_path / "new", [0.70], identity={})
    _seeds(tmp_path / "old", [0.60, 0.50])  # same columns, written by an older arttl
    runs, notes = label_runs(collect_results(tmp_path))
    assert table2(runs).n.loc[:, ("fine_tune", "imagenet")].tolist() == [2, 1]
    assert "older results.json without an identity" in notes[0]


def test_short_paths_use_as_few_parts_as_tell_them_apart() -> None:
    assert short_paths(["/d/ahe64/train_val", "/d/egypt224/train_val"]) == {
        "/d/ahe64/train_val": "ahe64/train_val",
        "/d/egypt224/train_val": "egypt224/train_val",
    }
    assert short_paths(["/m/a.pth", "/m/b.pth"]) == {"/m/a.pth": "a.pth", "/m/b.pth": "b.pth"}
    runs = ["/o/study_met/fine_tune-seed1/checkpoints/best.ckpt",
            "/o/study_wikiart/fine_tune-seed1/checkpoints/best.ckpt"]  # fmt: skip
    assert list(short_paths(runs).values()) == [
        "study_met/…/best.ckpt",
        "study_wikiart/…/best.ckpt",
    ]
