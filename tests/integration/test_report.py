"""`arttl.report` on a synthetic sweep: files, curves, bad input, and the command line."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from arttl import report as report_cli
from arttl.errors import ConfigError
from arttl.reporting.curves import read_history
from arttl.reporting.runs import make_report
from arttl.results import ResultsSchemaError
from tests.fixtures.sweep import (
    DIFFERENCES,
    RUNS,
    TABLE2_CSV,
    TABLE2_MD,
    make_sweep,
    markdown_cells,
)
from tests.fixtures.tiny_runs import results_record, write_run


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_sweep(tmp_path_factory.mktemp("sweep") / "multirun")


def test_report_writes_tables_csv_markdown_latex_and_curves(sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    report = make_report([sweep], out_dir=out)
    names = {p.name for p in report.files}
    assert names == {
        "runs.csv",
        "report.md",
        *(f"table{n}.{ext}" for n in (2, 3) for ext in ("csv", "md", "tex")),
        "differences.csv",
        "differences.md",
        "curves_antwerp_type.png",
        "curves_rijksmuseum_material.png",
        "curves_rijksmuseum_type.png",
    }
    assert all(p.is_file() for p in report.files)
    assert (out / "table2.csv").read_text() == TABLE2_CSV
    assert markdown_cells((out / "table2.md").read_text()) == TABLE2_MD
    assert r"\textbf{71.00} $\pm$ 1.41 (n=2)" in (out / "table2.tex").read_text()
    assert len(pd.read_csv(out / "runs.csv")) == len(RUNS)
    summary = (out / "report.md").read_text()
    assert "## Table 2" in summary and "## Table 3" in summary and "**85.00** (n=1)" in summary
    assert "1 cell averages several runs" in summary  # the two vgg19 fine-tuning seeds
    assert (
        summary.count("12 runs. Each cell: test_top1 in %, mean ± sample standard deviation") == 1
    )
    diffs = pd.read_csv(out / "differences.csv", keep_default_na=False)
    assert [
        (r.dataset, r.challenge, r.backbone, r.comparison, r.mean, r.n, str(r.seeds), r.unpaired)
        for r in diffs.itertuples()
    ] == DIFFERENCES
    assert "## Paired differences" in summary
    assert ["antwerp", "type", "vgg19", "Fine-tuning: θ̂ − θ", "+5.00 (n=1)", "1", ""] in (
        markdown_cells((out / "differences.md").read_text())
    )
    assert "![curves_rijksmuseum_type](curves_rijksmuseum_type.png)" in summary
    assert not list(out.glob(".*tmp*"))  # no temporary file left behind


def test_learning_curves_have_a_panel_per_mode_and_a_seed_mean_per_init(
    sweep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import matplotlib.axes

    plotted: list[tuple[matplotlib.axes.Axes, str, list[float]]] = []
    bands: list[tuple[list[float], list[float]]] = []
    real_plot, real_fill = matplotlib.axes.Axes.plot, matplotlib.axes.Axes.fill_between

    def spy(self, x, y, **kwargs):
        plotted.append((self, kwargs["label"], list(np.round(y, 4))))
        return real_plot(self, x, y, **kwargs)

    def spy_fill(self, x, low, high, **kwargs):
        bands.append((list(np.round(low, 4)), list(np.round(high, 4))))
        return real_fill(self, x, low, high, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", spy)
    monkeypatch.setattr(matplotlib.axes.Axes, "fill_between", spy_fill)
    report = make_report([sweep / "rijksmuseum_type"], out_dir=tmp_path, curves=True)
    assert [p.name for p in report.files if p.suffix == ".png"] == ["curves_rijksmuseum_type.png"]
    lines = {(ax.get_title(), label): y for ax, label, y in plotted}
    assert sorted(lines) == [
        ("Fine-tuning", "vgg19 · θ (ImageNet)"),
        ("From scratch", "vgg19 · from scratch (random init)"),
        ("Off-the-shelf", "resnet50 · θ (ImageNet)"),
        ("Off-the-shelf", "vgg19 · θ (ImageNet)"),
        ("Partial fine-tuning", "resnet50 · θ (ImageNet)"),
    ]
    # val top-1 per epoch in %, as written to metrics.csv (0.5, 0.8, 1.0 of the test top-1)
    assert lines[("Partial fine-tuning", "resnet50 · θ (ImageNet)")] == [25.0, 40.0, 50.0]
    runs = report.runs.query("mode == 'fine_tune'")
    seeds = [[100 * f * t for f in (0.5, 0.8, 1.0)] for t in runs["test_top1"]]
    assert len(seeds) == 2  # two seeds: their mean is the line, their min-max the one band
    assert lines[("Fine-tuning", "vgg19 · θ (ImageNet)")] == pytest.approx(
        np.mean(seeds, axis=0), abs=1e-3
    )
    assert bands == [
        (
            pytest.approx(np.min(seeds, axis=0), abs=1e-3),
            pytest.approx(np.max(seeds, axis=0), abs=1e-3),
        )
    ]
    with Image.open(report.files[-2]) as img:
        assert img.format == "PNG" and img.width > 400


def test_read_history_takes_one_value_per_epoch(tmp_path: Path) -> None:
    run = write_run(tmp_path, results_record(), val_top1=[0.1, 0.3, 0.35])
    series = read_history(run / "metrics.csv")
    assert series.index.tolist() == [0, 1, 2] and series.tolist() == [0.1, 0.3, 0.35]
    assert read_history(run / "metrics.csv", "val/top9").empty
    after_fit = pd.DataFrame([{"epoch": 3, "step": 30, "val/top1": 0.99}])  # trainer.validate()
    pd.concat([pd.read_csv(run / "metrics.csv"), after_fit]).to_csv(run / "metrics.csv")
    assert read_history(run / "metrics.csv").tolist() == [0.1, 0.3, 0.35]


def test_runs_without_history_are_noted_not_fatal(tmp_path: Path) -> None:
    write_run(tmp_path / "runs" / "a", results_record())  # no metrics.csv
    report = make_report([tmp_path / "runs"], out_dir=tmp_path / "out")
    assert not [p for p in report.files if p.suffix == ".png"]
    assert any("no val/top1 history" in n for n in report.notes)


def test_bad_input_fails_before_anything_is_written(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"no results\.json under"):
        make_report([tmp_path / "empty"], out_dir=out)
    write_run(tmp_path / "mixed" / "good", results_record())
    old = write_run(tmp_path / "mixed" / "old", {**results_record(), "schema_version": 0})
    with pytest.raises(ResultsSchemaError, match=re.escape(str(old / "results.json"))):
        make_report([tmp_path / "mixed"], out_dir=out)
    with pytest.raises(ConfigError, match="metric="):
        make_report([tmp_path / "mixed" / "good"], out_dir=out, metric="accuracy")
    assert not out.exists()


def test_positional_folders_become_runs_override() -> None:
    argv = ["report", "multirun/a", "out_dir=x", "--config-name", "report", "b's"]
    assert report_cli.positional_to_runs(argv) == [
        "report",
        "out_dir=x",
        "--config-name",
        "report",
        "runs=['multirun/a','b\\'s']",
    ]


def _cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *args: str) -> None:
    argv = ["arttl.report", *args, f"hydra.run.dir={tmp_path / 'hydra'}"]
    monkeypatch.setattr(sys, "argv", argv)
    report_cli.main()


def test_cli_prints_tables_and_writes_to_a_new_folder(
    sweep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    runs = tmp_path / "runs"
    write_run(runs / "0", results_record(test={"top1": 0.875}), val_top1=[0.5, 0.9])
    _cli(monkeypatch, tmp_path, str(runs), "curves=false")
    out = capsys.readouterr().out
    assert "Table 2" in out and "87.50 (n=1)" in out and "no Table 3" in out
    assert "mean ± sample standard deviation" in out and "1 run -> " in out
    report = tmp_path / "hydra"  # the default: a new folder (the Hydra run folder), never the runs'
    assert json.loads(json.dumps(pd.read_csv(report / "table2.csv").to_dict()))
    assert not (report / "curves_rijksmuseum_type.png").exists()
    assert not (runs / "report").exists()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: root.mkdir(), "no results.json under"),
        (lambda root: None, "does not exist"),
        (
            lambda root: write_run(root / "r", {**results_record(), "schema_version": 0}),
            r"r/results.json' has schema_version=0",
        ),
    ],
)
def test_cli_bad_input_exits_2_with_a_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, make, message
) -> None:
    root = tmp_path / "runs"
    make(root)
    with pytest.raises(SystemExit) as exit_info:
        _cli(monkeypatch, tmp_path, str(root))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err.replace("\\", "/")
    assert not (root / "report").exists()


@pytest.mark.slow  # two real training runs: about 30 s on 2 CPU cores
def test_real_training_runs_feed_the_report(tmp_path: Path) -> None:
    """The contract between train and report: results.json plus metrics.csv beside it."""
    from arttl.training.run import run_training
    from tests.fixtures.raw_datasets import make_imagefolder
    from tests.fixtures.training import compose_train

    ds = make_imagefolder(tmp_path / "raw", n_per_class=6)
    for mode in ("off_the_shelf", "fine_tune"):
        cfg = compose_train(
            tmp_path,
            "dataset=imagefolder",
            f"dataset.root={ds.root}",
            f"mode={mode}",
            "backbone.weights=none",
            "trainer.max_epochs=2",
            f"run_dir={tmp_path}/multirun/{mode}",
        )
        run_training(cfg, cfg.run_dir)
    report = make_report([tmp_path / "multirun"], out_dir=tmp_path / "report")
    runs = report.runs.set_index("mode")
    table = report.tables["table2"]
    for mode in ("off_the_shelf", "fine_tune"):
        assert table.mean.loc[:, (mode, "none")].item() == pytest.approx(
            100 * runs.loc[mode, "test_top1"]
        )
        assert table.n.loc[:, (mode, "none")].item() == 1
    assert table.mean.loc[:, ("fine_tune", "imagenet")].isna().all()  # not run: empty
    # what training writes is what report reads: one identity per run, not mixed
    assert runs["run_id"].nunique() == 2 and not runs["identity_derived"].any()
    assert runs["identity.preprocessing.input_size"].notna().all()
    assert [p.name for p in report.files if p.suffix == ".png"] == ["curves_imagefolder_class.png"]
    assert not report.notes or "history" not in " ".join(report.notes)
    logged = pd.read_csv(runs.loc["fine_tune", "history_path"])
    assert logged["epoch"].max() == 2  # validate/test on the best checkpoint, after fit
    assert read_history(runs.loc["fine_tune", "history_path"]).index.tolist() == [0, 1]


def test_a_copied_run_folder_counts_once(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for seed, top1 in ((1, 0.70), (2, 0.72)):
        rec = results_record(identity={}, seed=seed, test={"top1": top1})
        write_run(runs / f"seed{seed}", rec, val_top1=[0.5, top1])
    shutil.copytree(runs / "seed2", runs / "seed2 (backup)")  # same run_id, second path
    report = make_report([runs], out_dir=tmp_path / "out", curves=False)
    assert len(report.runs) == 2 and len(pd.read_csv(tmp_path / "out" / "runs.csv")) == 2
    copies = sorted(str(runs / d / "results.json") for d in ("seed2", "seed2 (backup)"))
    assert copies[0] in report.runs["results_path"].tolist()  # the first in sorted order
    note = next(n for n in report.notes if "duplicate" in n)
    assert note.startswith("1 duplicate copy of a run ignored") and note.endswith(copies[1])
    table = report.tables["table2"]
    assert table.n.loc[:, ("fine_tune", "imagenet")].tolist() == [2]  # not 3
    assert table.mean.loc[:, ("fine_tune", "imagenet")].tolist() == [pytest.approx(71.0)]


def test_runs_of_two_collections_with_one_dataset_name_are_two_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    runs = tmp_path / "runs"
    for name, values in (("ahe64", (0.5, 0.6)), ("egypt224", (0.9, 0.8))):
        for seed, top1 in enumerate(values, start=1):
            rec = results_record(
                identity={"source": {"root": f"/data/{name}/train_val"}},
                dataset="imagefolder",
                challenge="class",
                backbone="resnet18",
                seed=seed,
                test={"top1": top1},
            )
            write_run(runs / name / str(seed), rec, val_top1=[0.3, top1])
    report = make_report([runs], out_dir=tmp_path / "out")
    md = markdown_cells((tmp_path / "out" / "table2.md").read_text())
    assert [row[:3] for row in md[1:]] == [
        ["imagefolder (ahe64/train_val)", "class", "resnet18"],
        ["imagefolder (egypt224/train_val)", "class", "resnet18"],
    ]
    assert [row[4] for row in md[1:]] == ["**55.00** ± 7.07 (n=2)", "**85.00** ± 7.07 (n=2)"]
    assert any("come from 2 different source folders" in n for n in report.notes)
    assert {p.name for p in report.files if p.suffix == ".png"} == {
        "curves_imagefolder-ahe64-train_val_class.png",
        "curves_imagefolder-egypt224-train_val_class.png",
    }
    monkeypatch.setenv("COLUMNS", "200")  # rich: no folded cells
    _cli(monkeypatch, tmp_path, str(runs), "curves=false", f"out_dir={tmp_path / 'cli'}")
    out = capsys.readouterr().out
    assert "imagefolder (ahe64/train_val)" in out and "55.00 ± 7.07 (n=2)" in out
    assert "4 runs -> " in out


def test_input_sizes_and_weight_files_are_separated_in_the_report(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for size in (32, 48):
        ident = {"preprocessing": {"input_size": [3, size, size]}}
        write_run(runs / f"s{size}", results_record(identity=ident, backbone="resnet18"))
    for name in ("a", "b"):
        rec = results_record(identity={}, backbone="vgg19", weights=f"/w/{name}.safetensors")
        write_run(runs / name, rec)
    report = make_report([runs], out_dir=tmp_path / "out", curves=False)
    csv = pd.read_csv(tmp_path / "out" / "table2.csv")
    assert csv["backbone"].tolist() == ["resnet18 @32px", "resnet18 @48px", "vgg19"]
    assert {"fine_tune/file (a.safetensors)", "fine_tune/file (b.safetensors)"} <= set(csv)
    assert csv["fine_tune/file (a.safetensors)_n"].tolist()[2] == 1
    labels = pd.read_csv(tmp_path / "out" / "runs.csv")[["backbone_label", "init_label"]]
    assert sorted(labels.itertuples(index=False, name=None)) == [
        ("resnet18 @32px", "imagenet"),
        ("resnet18 @48px", "imagenet"),
        ("vgg19", "file (a.safetensors)"),
        ("vgg19", "file (b.safetensors)"),
    ]
    assert len(report.notes) >= 2


def test_curve_colours_follow_the_initialisation_in_every_report(tmp_path: Path) -> None:
    """θ is blue whether or not θ̂ lines sort before it; a second θ̂ source gets a colour of its
    own; a one-epoch run's axis shows whole epochs."""
    from matplotlib.colors import to_hex

    from arttl.reporting.curves import _curves_figure, line_colours

    alone = line_colours([("vgg19", "imagenet")])
    both = line_colours(
        [("vgg19", "arttl (a.ckpt)"), ("vgg19", "arttl (b.ckpt)"), ("vgg19", "imagenet")]
    )
    assert alone[("vgg19", "imagenet")] == both[("vgg19", "imagenet")] == "tab:blue"
    assert both[("vgg19", "arttl (a.ckpt)")] == "tab:orange"
    assert len(set(both.values())) == 3
    one_epoch = {("fine_tune", "vgg19", "imagenet"): [pd.Series([0.5])]}
    ax = _curves_figure("t", one_epoch, "val top1").axes[0]
    assert ax.get_xlim() == (0.5, 1.5)
    assert [t for t in ax.get_xticks() if 0.5 <= t <= 1.5] == [1.0]
    assert to_hex(ax.get_lines()[0].get_color()) == to_hex("tab:blue")


def test_report_notes_runs_evaluated_on_part_of_their_split(tmp_path: Path) -> None:
    """A run cut short by trainer.limit_test_batches (results.json ``evaluated``) is named in
    the notes; a whole-split run and an older file without ``evaluated`` are not."""
    write_run(tmp_path / "runs" / "short", results_record(evaluated={"val": 10, "test": 4}))
    write_run(tmp_path / "runs" / "whole", results_record(evaluated={"val": 10, "test": 10}))
    write_run(tmp_path / "runs" / "old", results_record())
    report = make_report([tmp_path / "runs"], out_dir=tmp_path / "out", curves=False)
    said = [n for n in report.notes if "part of the split" in n]
    assert said == [
        "1 run has val/test numbers on part of the split only (trainer.limit_val_batches / "
        "limit_test_batches; runs.csv: evaluated_* against samples_*): "
        f"{tmp_path / 'runs' / 'short'}"
    ]


def test_curves_say_when_their_points_are_training_precision_values() -> None:
    """bf16-trained runs: the curve points are bf16 values while the tables re-evaluate in fp32,
    so the figure says so (a table number need not be on the curve); fp32 runs: nothing."""
    from arttl.reporting.curves import _curves_figure, _precision_note

    bf16 = pd.DataFrame({"precision": ["bf16-mixed", "32-true"], "eval_precision": ["32-true"] * 2})
    note = _precision_note(bf16)
    assert note.startswith("points as logged while training (bf16-mixed); the tables re-evaluate")
    assert _precision_note(bf16.iloc[1:]) == "" and _precision_note(pd.DataFrame()) == ""
    fig = _curves_figure("t", {("fine_tune", "vgg19", "imagenet"): [pd.Series([0.5])]}, "y", note)
    assert "while training (bf16-mixed)" in " ".join(fig._suptitle.get_text().split())
