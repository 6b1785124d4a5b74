"""Multi-task runs in the report: one row per task, their own columns, the multitask table.

The sweep (dataset egypt, resnet50, test top-1):
  multi-task fine-tuning θ on type+material+period, seeds 1-3 (MT below), 100/110/120 s each
  single-task fine-tuning θ: type seeds 1-2 (plain runs), material seeds 1-2 (tasks=[material]
  of the multi-task store), period seed 1 (plain); 50 s each
  single-task off-the-shelf θ on type, seed 1 (no multi-task counterpart)
Expected numbers are computed here with numpy, not read back from the code under test.
"""

from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from arttl import report as report_cli
from arttl.reporting.cells import label_runs
from arttl.reporting.curves import row_history, task_metric
from arttl.reporting.runs import make_report
from arttl.reporting.tables import (
    column_labels,
    differences,
    multitask_csv_frame,
    multitask_markdown,
    multitask_table,
    table2,
    to_csv_frame,
    training_time,
)
from arttl.results import ResultsSchemaError, collect_results, load_results, write_results
from tests.fixtures.sweep import TABLE2_CSV, make_sweep, markdown_cells
from tests.fixtures.tiny_runs import results_record, write_run

TASKS = ("type", "material", "period")
TOGETHER = "material+period+type"
MT_COLUMN = ("fine_tune", f"imagenet multi-task ({TOGETHER})")
ST_COLUMN = ("fine_tune", "imagenet")
CLASSES = {"type": ["Jewellery", "Amulet", "Vessel", "Figure", "Stela", "Scarab"],
           "material": ["Faience", "Stone", "Wood", "Bronze"],
           "period": ["Old Kingdom", "Middle Kingdom", "New Kingdom", "Late Period", "Ptolemaic",
                      "Roman", "Coptic"]}  # fmt: skip
SAMPLES = {"type": 120, "material": 90, "period": 60}  # images with that task's label
MT_TEST = {  # seed -> task -> test top-1
    1: {"type": 0.70, "material": 0.60, "period": 0.50},
    2: {"type": 0.74, "material": 0.62, "period": 0.47},
    3: {"type": 0.75, "material": 0.67, "period": 0.53},
}
MT_SECONDS = {1: 100.0, 2: 110.0, 3: 120.0}
ST_TEST = {"type": [0.78, 0.80], "material": [0.64, 0.66], "period": [0.55]}
ST_SECONDS = 50.0
OTS_TYPE = 0.61
STORE = {"store": {"fingerprint": "egypt-multi"}}


def _metrics(top1: float) -> dict[str, float | None]:
    return {"top1": top1, "top3": min(1.0, top1 + 0.1), "top5": None, "macro_top1": top1 - 0.05,
            "loss": 1.0 - top1}  # fmt: skip


def _task(task: str, test_top1: float) -> dict:
    return {
        "classes": CLASSES[task],
        "samples": {"train": SAMPLES[task], "val": SAMPLES[task] // 3, "test": SAMPLES[task] // 3},
        "val": _metrics(test_top1 - 0.02),
        "test": _metrics(test_top1),
    }


def _mean_block(tasks: dict) -> dict:
    return {
        k: (None if any(t["test"][k] is None for t in tasks.values())
            else float(np.mean([t["test"][k] for t in tasks.values()])))
        for k in ("top1", "top3", "top5", "macro_top1", "loss")
    }  # fmt: skip


def _history(run: Path, per_task: dict[str, float]) -> None:
    """A multi-task metrics.csv: val/<task>/top1 per task, val/top1 the mean over tasks."""
    rows = []
    for epoch, f in enumerate((0.5, 1.0)):
        rows.append({"epoch": epoch, "step": epoch * 10 + 9, "train/loss": 1.0})
        val = {f"val/{t}/top1": f * v for t, v in per_task.items()}
        mean = float(np.mean(list(val.values())))
        rows.append({"epoch": epoch, "step": epoch * 10 + 9, "val/top1": mean, **val})
    pd.DataFrame(rows).to_csv(run / "metrics.csv", index=False)


def multitask_record(seed: int, per_task: dict[str, float], **overrides) -> dict:
    """A results.json of a network trained on several tasks (or one task of a multi-task store)."""
    tasks = {t: _task(t, v) for t, v in per_task.items()}
    return results_record(
        identity={**STORE, "tasks": sorted(per_task)},
        dataset="egypt",
        challenge="+".join(per_task),
        num_classes=sum(len(CLASSES[t]) for t in per_task),
        seed=seed,
        val=_mean_block(tasks),
        test=_mean_block(tasks),
        tasks=tasks,
        **overrides,
    )


def make_multitask_sweep(root: Path) -> Path:
    for seed, per_task in MT_TEST.items():
        run = write_run(
            root / f"mt-{seed}", multitask_record(seed, per_task, wall_seconds=MT_SECONDS[seed])
        )
        _history(run, per_task)  # fmt: skip
    for seed, top1 in enumerate(ST_TEST["material"], start=1):  # tasks=[material]
        rec = multitask_record(seed, {"material": top1}, wall_seconds=ST_SECONDS)
        write_run(root / f"material-{seed}", rec, val_top1=[top1 / 2, top1])
    for task in ("type", "period"):  # plain single-task runs: no tasks section
        for seed, top1 in enumerate(ST_TEST[task], start=1):
            rec = results_record(identity={}, dataset="egypt", challenge=task, seed=seed,
                                 test={"top1": top1}, wall_seconds=ST_SECONDS)  # fmt: skip
            write_run(root / f"{task}-{seed}", rec, val_top1=[top1 / 2, top1])
    rec = results_record(identity={}, dataset="egypt", challenge="type", mode="off_the_shelf",
                         seed=1, test={"top1": OTS_TYPE}, wall_seconds=5.0)  # fmt: skip
    write_run(root / "type-ots", rec, val_top1=[OTS_TYPE])
    return root


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_multitask_sweep(tmp_path_factory.mktemp("multitask") / "runs")


@pytest.fixture(scope="module")
def runs(sweep: Path) -> pd.DataFrame:
    return label_runs(collect_results(sweep))[0]


def _mt_values(task: str) -> np.ndarray:
    return 100 * np.array([MT_TEST[s][task] for s in sorted(MT_TEST)])


def test_a_multitask_run_is_one_row_per_task(sweep: Path) -> None:
    runs = collect_results(sweep)
    mt = runs[runs["multitask"].notna()]
    assert len(mt) == len(MT_TEST) * len(TASKS) and set(mt["multitask"]) == {TOGETHER}
    assert mt.groupby("run_id")["challenge"].apply(sorted).tolist() == [sorted(TASKS)] * 3
    for _, row in mt.iterrows():  # each row carries its task's numbers, not the run's mean
        task, seed = row["challenge"], int(row["seed"])
        assert row["test_top1"] == pytest.approx(MT_TEST[seed][task])
        assert row["val_top1"] == pytest.approx(MT_TEST[seed][task] - 0.02)
        assert np.isnan(row["test_top5"])  # null stays null
        assert row["num_classes"] == len(CLASSES[task])
        assert row["samples_train"] == SAMPLES[task]
        assert row["wall_seconds"] == MT_SECONDS[seed]
        assert row["run_dir"] == str(sweep / f"mt-{seed}")
    assert mt.groupby("run_id")["identity_hash"].nunique().eq(1).all()  # one run, one identity
    assert mt["identity_hash"].nunique() == 1  # the three seeds are seeds of one experiment
    assert not any(c.startswith("tasks_") for c in runs.columns)
    # one task of a multi-task store: a single-task network, its task is its challenge
    material = runs[runs["run_dir"].str.contains("material-")]
    assert material["multitask"].isna().all() and set(material["challenge"]) == {"material"}
    assert material["num_classes"].tolist() == [len(CLASSES["material"])] * 2
    plain = runs[runs["run_dir"].str.contains("type-")]
    assert plain["multitask"].isna().all() and set(plain["challenge"]) == {"type"}
    assert len(runs) == 9 + 2 + 2 + 1 + 1


def test_old_results_get_an_empty_multitask_column_and_the_old_tables(tmp_path: Path) -> None:
    runs = collect_results(make_sweep(tmp_path / "old"))
    assert runs["multitask"].isna().all()
    buf = io.StringIO()
    to_csv_frame(table2(runs)).to_csv(buf, index=False)
    assert buf.getvalue() == TABLE2_CSV
    assert multitask_table(runs).empty
    report = make_report([tmp_path / "old"], out_dir=tmp_path / "out", curves=False)
    assert report.multitask is None
    assert not (tmp_path / "out" / "multitask.md").exists()
    assert "Multi-task" not in (tmp_path / "out" / "report.md").read_text()


def test_a_copied_multitask_run_counts_once(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    write_run(root / "a", multitask_record(1, MT_TEST[1]))
    shutil.copytree(root / "a", root / "b")  # same run_id under a second path
    runs = collect_results(root)
    assert len(runs) == 3 and set(runs["run_dir"]) == {str(root / "a")}
    assert runs.attrs["duplicate_copies"] == [str(root / "b" / "results.json")]


def test_table2_has_a_multitask_column_never_mixed_with_single_task(runs: pd.DataFrame) -> None:
    table = table2(runs)
    assert list(table.columns) == [("off_the_shelf", "imagenet"), ST_COLUMN, MT_COLUMN]
    assert column_labels(table) == [
        "Off-the-shelf",
        "Fine-tuning",
        f"Fine-tuning, multi-task ({TOGETHER})",
    ]
    for task in TASKS:
        row = ("egypt", task, "resnet50")
        values = _mt_values(task)
        assert table.mean.loc[row, MT_COLUMN] == pytest.approx(values.mean())
        assert table.std.loc[row, MT_COLUMN] == pytest.approx(values.std(ddof=1))
        assert table.n.loc[row, MT_COLUMN] == 3
        single = 100 * np.array(ST_TEST[task])
        assert table.mean.loc[row, ST_COLUMN] == pytest.approx(single.mean())
        assert table.n.loc[row, ST_COLUMN] == len(single)
    assert table.mean.loc[("egypt", "type", "resnet50"), ("off_the_shelf", "imagenet")] == 61.0


def test_label_runs_explains_the_multitask_columns(sweep: Path) -> None:
    runs, notes = label_runs(collect_results(sweep))
    assert any(
        n.startswith("3 multi-task runs trained material, period, type together") for n in notes
    )
    assert set(runs.loc[runs["multitask"].notna(), "init_label"]) == {MT_COLUMN[1]}
    assert set(runs.loc[runs["multitask"].isna(), "init_label"]) == {"imagenet"}


def test_multitask_table_puts_single_and_multitask_side_by_side(runs: pd.DataFrame) -> None:
    table = multitask_table(runs)
    assert list(table.index) == [("egypt", t, "resnet50") for t in sorted(TASKS)]
    assert list(table.columns) == [ST_COLUMN, MT_COLUMN]  # no off-the-shelf: no MT counterpart
    md = markdown_cells(multitask_markdown(table, training_time(runs, table)))
    assert md[0] == ["Dataset", "Challenge", "Backbone", "Fine-tuning, single-task",
                     f"Fine-tuning, multi-task ({TOGETHER})"]  # fmt: skip
    for line in md[1:4]:
        task = line[1]
        mt, st = _mt_values(task), 100 * np.array(ST_TEST[task])
        expected_mt = f"{mt.mean():.2f} ± {mt.std(ddof=1):.2f} (n=3)"
        expected_st = f"{st.mean():.2f}" + (f" ± {st.std(ddof=1):.2f}" if len(st) > 1 else "")
        expected_st += f" (n={len(st)})"
        assert line[3].replace("**", "") == expected_st and line[4].replace("**", "") == expected_mt
        best_mt = mt.mean() > st.mean()  # the best of each task in bold, as in Tables 2 and 3
        assert line[4].startswith("**") == best_mt and line[3].startswith("**") != best_mt


def test_training_time_counts_a_multitask_run_once(runs: pd.DataFrame) -> None:
    table = multitask_table(runs)
    time = training_time(runs, table)
    single_runs = sum(len(v) for v in ST_TEST.values())
    assert time.loc[MT_COLUMN, "seconds"] == pytest.approx(sum(MT_SECONDS.values()))  # not x3
    assert time.loc[MT_COLUMN, "runs"] == len(MT_SECONDS)
    assert time.loc[ST_COLUMN, "seconds"] == pytest.approx(single_runs * ST_SECONDS)
    assert time.loc[ST_COLUMN, "runs"] == single_runs
    md = markdown_cells(multitask_markdown(table, time))
    assert md[-1] == ["Total training time", "", "", "4.2 min (5 runs)", "5.5 min (3 runs)"]
    csv = multitask_csv_frame(table, time)
    last = csv.iloc[-1]
    assert last["dataset"] == "total training time (s)"
    assert last["/".join(MT_COLUMN)] == 330.0 and last["/".join(MT_COLUMN) + "_n"] == 3
    assert last["/".join(ST_COLUMN)] == 250.0 and last["/".join(ST_COLUMN) + "_n"] == 5


def test_theta_hat_is_paired_only_with_the_same_kind_of_network(
    sweep: Path, tmp_path: Path
) -> None:
    root = tmp_path / "runs"
    shutil.copytree(sweep, root)
    hat_weights = "checkpoints/x/resnet50-fine_tune.ckpt"
    hat = results_record(identity={}, dataset="egypt", challenge="type", seed=1,
                         weights=hat_weights, test={"top1": 0.9})  # fmt: skip
    write_run(root / "type-hat", hat)
    diffs = differences(collect_results(root))
    hats = diffs[diffs["kind"] == "theta_hat-theta"]
    assert hats["comparison"].tolist() == ["Fine-tuning: θ̂ − θ"]
    assert hats["mean"].tolist() == [pytest.approx(90.0 - 78.0)]  # the single-task seed 1


def test_report_writes_the_multitask_table_and_curves_per_task(sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = make_report([sweep], out_dir=out)
    names = {p.name for p in report.files}
    assert {"multitask.md", "multitask.csv", "table2.md", "runs.csv"} <= names
    assert {f"curves_egypt_{t}.png" for t in TASKS} <= names
    assert not [n for n in report.notes if "history" in n]  # every row found its curve
    summary = (out / "report.md").read_text()
    assert "## Multi-task versus single-task networks, per task" in summary
    assert "[CSV](multitask.csv)" in summary and "counted once" in summary
    assert summary.startswith("# arttl report\n\n9 runs (15 rows: a multi-task run has one row")
    md = (out / "multitask.md").read_text()
    assert md in summary and "| Total training time" in md
    csv = pd.read_csv(out / "multitask.csv")
    assert csv["challenge"].tolist()[:3] == sorted(TASKS)
    assert csv[f"fine_tune/imagenet multi-task ({TOGETHER})_n"].tolist() == [3, 3, 3, 3]
    assert len(pd.read_csv(out / "runs.csv")) == 15


def test_row_history_reads_the_tasks_column(sweep: Path, runs: pd.DataFrame) -> None:
    assert task_metric("val/top1", "material") == "val/material/top1"
    assert task_metric("epoch", "material") == "epoch"
    row = runs[(runs["run_dir"] == str(sweep / "mt-2")) & (runs["challenge"] == "period")].iloc[0]
    assert row_history(row, "val/top1").tolist() == pytest.approx([0.235, 0.47])
    single = runs[runs["run_dir"] == str(sweep / "material-1")].iloc[0]
    assert row_history(single, "val/top1").tolist() == pytest.approx([0.32, 0.64])
    assert row_history(row, "val/top9").empty


def test_learning_curves_draw_a_multitask_line(
    sweep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import matplotlib.axes

    plotted: list[tuple[str, list[float]]] = []
    real_plot = matplotlib.axes.Axes.plot

    def spy(self, x, y, **kwargs):
        plotted.append((kwargs["label"], list(np.round(y, 4))))
        return real_plot(self, x, y, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", spy)
    root = tmp_path / "runs"
    for name in ("mt-1", "mt-2", "mt-3", "material-1", "material-2"):
        shutil.copytree(sweep / name, root / name)
    report = make_report([root], out_dir=tmp_path / "out")
    assert [p.name for p in report.files if p.suffix == ".png"] == [
        f"curves_egypt_{t}.png" for t in sorted(TASKS)
    ]
    multi = [y for label, y in plotted if label == f"θ (ImageNet), multi-task ({TOGETHER})"]
    # one figure per task, in task order; each line is that task's column of the three runs
    # (val/<task>/top1, 0.5 then 1.0 of the test top-1), not the mean over tasks (val/top1)
    expected = [_mt_values(t).mean() * np.array([0.5, 1.0]) for t in sorted(TASKS)]
    assert multi == [pytest.approx(e, abs=1e-3) for e in expected]
    # beside a multi-task line, a single-task one says it is one
    single = [y for label, y in plotted if label == "θ (ImageNet), single-task"]
    assert single == [pytest.approx([32.5, 65.0], abs=1e-3)]  # material seeds 1-2: 64, 66


def test_results_with_tasks_round_trip_and_bad_tasks_are_named(tmp_path: Path) -> None:
    record = multitask_record(1, MT_TEST[1])
    path = write_results(tmp_path / "ok" / "results.json", record)
    assert load_results(path)["tasks"]["period"]["classes"] == CLASSES["period"]
    broken = json.loads(json.dumps(record))
    del broken["tasks"]["type"]["val"]
    broken["tasks"]["material"]["test"]["top1"] = "high"
    with pytest.raises(ResultsSchemaError, match=r"missing key 'tasks\.type\.val'.*"
                       r"'tasks\.material\.test\.top1' must be a number"):  # fmt: skip
        write_results(tmp_path / "bad" / "results.json", broken)
    with pytest.raises(ResultsSchemaError, match="'tasks' must be a non-empty object"):
        write_results(tmp_path / "bad" / "results.json", {**record, "tasks": {}})


def test_cli_prints_the_multitask_table(
    sweep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    argv = ["arttl.report", str(sweep), "curves=false", f"out_dir={tmp_path / 'out'}",
            f"hydra.run.dir={tmp_path / 'hydra'}"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    report_cli.main()
    out = capsys.readouterr().out
    assert "Multi-task versus single-task networks, per task" in out
    assert "Total training time" in out and "5.5 min (3 runs)" in out
    assert "9 runs (15 rows" in out


def test_multitask_minus_single_task_is_paired_only_on_the_same_test_images(
    tmp_path: Path,
) -> None:
    """tasks=[material] runs of the multi-task store share its test images: paired by seed.
    Plain single-task type runs (another store) are never paired with the multi-task ones."""
    root = tmp_path / "runs"
    same, other = {"content_hash": "multi-store"}, {"content_hash": "type-store"}
    for seed, per_task in MT_TEST.items():
        write_run(root / f"mt-{seed}", multitask_record(seed, per_task, store=same))
    for seed, top1 in enumerate(ST_TEST["material"], start=1):
        write_run(root / f"m-{seed}", multitask_record(seed, {"material": top1}, store=same))
    for seed, top1 in enumerate(ST_TEST["type"], start=1):
        rec = results_record(identity={}, dataset="egypt", challenge="type", seed=seed,
                             test={"top1": top1}, store=other)  # fmt: skip
        write_run(root / f"t-{seed}", rec)
    diffs = differences(collect_results(root))
    paired = diffs[diffs["kind"] == "multitask-single_task"]
    assert paired["challenge"].tolist() == ["material"]  # type: other test images, not paired
    want = [100 * (MT_TEST[s]["material"] - ST_TEST["material"][s - 1]) for s in (1, 2)]
    row = paired.iloc[0]
    assert row["mean"] == pytest.approx(np.mean(want)) and row["n"] == 2
    assert row["comparison"] == f"Fine-tuning, θ: multi-task ({TOGETHER}) − single-task"
    assert "3" in str(row["unpaired"])  # the multi-task seed 3 has no single-task partner
    report = make_report([root], out_dir=tmp_path / "out")
    assert "multi-task − single-task" in (tmp_path / "out" / "report.md").read_text()
    assert report.differences is not None
