"""results.json: the schema training writes and report reads, and reading a sweep into a table."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from arttl.errors import ConfigError
from arttl.results import (
    SCHEMA_VERSION,
    ResultsSchemaError,
    collect_results,
    find_results,
    flatten_identity,
    hash_identity,
    init_kind,
    load_results,
    record_identity,
    write_results,
)
from tests.fixtures.tiny_runs import results_record, write_run


def test_write_then_load_round_trips_and_puts_schema_version_first(tmp_path: Path) -> None:
    record = results_record()
    del record["schema_version"]  # training may leave it to write_results
    path = write_results(tmp_path / "run" / "results.json", record)
    text = path.read_text()
    assert next(iter(json.loads(text))) == "schema_version"
    loaded = load_results(path)
    assert loaded["schema_version"] == SCHEMA_VERSION
    assert loaded["test"] == record["test"] and loaded["samples"] == record["samples"]


def test_non_finite_metrics_are_written_as_null(tmp_path: Path) -> None:
    record = results_record(test={"top5": float("nan"), "loss": float("inf")})
    path = write_results(tmp_path / "results.json", record)
    saved = json.loads(path.read_text())  # strict JSON: no NaN literal
    assert saved["test"]["top5"] is None and saved["test"]["loss"] is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"backbone": None}, "'backbone' must be a string"),
        ({"num_classes": 0}, "'num_classes' must be a positive integer"),
        ({"test": {"top1": "high"}}, "'test.top1' must be a number or null"),
        ({"val": [0.5]}, "'val' must be an object"),
        ({"schema_version": 2}, "schema_version=2"),
        ({"run_id": 17}, "'run_id' must be a non-empty string"),
        ({"identity_hash": ""}, "'identity_hash' must be a non-empty string"),
        ({"identity": [1, 2]}, "'identity' must be an object"),
    ],
)
def test_invalid_record_is_refused_and_nothing_is_written(
    tmp_path: Path, change: dict, message: str
) -> None:
    record = results_record()
    record.update(change)
    path = tmp_path / "results.json"
    with pytest.raises(ResultsSchemaError, match=message):
        write_results(path, record)
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_missing_key_is_named(tmp_path: Path) -> None:
    record = results_record()
    del record["wall_seconds"], record["val"]["top3"]
    with pytest.raises(ResultsSchemaError, match=r"missing key 'wall_seconds'.*'val\.top3'"):
        write_results(tmp_path / "results.json", record)


def test_a_failed_rewrite_keeps_the_old_file(tmp_path: Path) -> None:
    path = write_results(tmp_path / "results.json", results_record(test={"top1": 0.5}))
    with pytest.raises(ResultsSchemaError):
        write_results(path, results_record(num_classes="ten"))
    assert load_results(path)["test"]["top1"] == 0.5


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"experiment": "x"}', "has no schema_version: it comes from an older arttl"),
        (json.dumps(results_record(schema_version=0)), "schema_version=0, this arttl reads 1"),
        (json.dumps(results_record(schema_version=7)), "written by a newer arttl"),
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_unreadable_results_name_the_file_and_the_fix(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "old_run" / "results.json"
    path.parent.mkdir()
    path.write_text(content)
    with pytest.raises(ResultsSchemaError, match=message) as err:
        load_results(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    ("weights", "kind"),
    [
        ("imagenet", "imagenet"),
        (None, "none"),
        ("none", "none"),
        ("checkpoints/rijks_type/resnet50-fine_tune.ckpt", "arttl"),
        ("/models/resnet50.safetensors", "file"),
    ],
)
def test_init_kind(weights: str | None, kind: str) -> None:
    assert init_kind(weights) == kind


def test_collect_results_flattens_one_row_per_run(tmp_path: Path) -> None:
    write_run(tmp_path / "a" / "0", results_record(backbone="vgg19"), val_top1=[0.1, 0.2])
    write_run(
        tmp_path / "b" / "deep" / "1",
        results_record(weights="checkpoints/x/vgg19-fine_tune.ckpt", test=None),
    )
    runs = collect_results([tmp_path / "a", tmp_path / "b"])
    assert len(runs) == 2
    first, second = runs.iloc[0], runs.iloc[1]
    assert first["backbone"] == "vgg19" and first["test_top1"] == pytest.approx(0.8)
    assert first["samples_train"] == 80 and first["init"] == "imagenet"
    assert first["history_path"] == str((tmp_path / "a" / "0" / "metrics.csv").resolve())
    assert second["init"] == "arttl" and math.isnan(second["test_top1"])
    assert pd.isna(second["history_path"])  # no metrics.csv written for that run


def test_find_results_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"no results\.json under"):
        find_results(tmp_path / "empty")
    with pytest.raises(ConfigError, match="does not exist"):
        find_results(tmp_path / "nowhere")
    run = write_run(tmp_path / "r", results_record())
    assert find_results([run, run / "results.json"]) == [(run / "results.json").resolve()]


def test_one_bad_file_stops_the_whole_collection(tmp_path: Path) -> None:
    write_run(tmp_path / "good", results_record())
    write_run(tmp_path / "old", {"experiment": "x", "test": {"top1": 0.9}})
    with pytest.raises(
        ResultsSchemaError, match=r"(?s)1 of 2 results files.*old[/\\]results\.json"
    ):
        collect_results(tmp_path)


def test_identity_keys_are_optional_and_round_trip(tmp_path: Path) -> None:
    old = write_results(tmp_path / "old" / "results.json", results_record())
    assert {"run_id", "identity_hash", "identity"}.isdisjoint(load_results(old))
    new = write_results(tmp_path / "new" / "results.json", results_record(identity={}))
    loaded = load_results(new)
    assert len(loaded["run_id"]) == 32 and loaded["identity_hash"] == hash_identity(
        loaded["identity"]
    )
    assert loaded["identity"]["preprocessing"]["input_size"] == [3, 224, 224]


def test_record_identity_falls_back_to_the_old_columns() -> None:
    a, b = results_record(seed=1), results_record(seed=2, test={"top1": 0.1})
    hash_a, identity_a, derived = record_identity(a)
    assert derived and hash_a.startswith("legacy-") and hash_a == record_identity(b)[0]
    assert set(identity_a) == {
        "dataset", "challenge", "backbone", "mode", "weights", "num_classes", "samples"
    }  # fmt: skip
    for change in ({"weights": "/w/a.pth"}, {"num_classes": 7}, {"samples": {"train": 81}}):
        assert record_identity(results_record(**change))[0] != hash_a
    given = results_record(identity={}, identity_hash="abc123")
    assert record_identity(given)[:2] == ("abc123", given["identity"])
    no_hash = {k: v for k, v in results_record(identity={}).items() if k != "identity_hash"}
    assert record_identity(no_hash)[0] == hash_identity(no_hash["identity"])


def test_flatten_identity_uses_dots_and_keeps_lists() -> None:
    flat = flatten_identity({"a": {"b": {"c": 1}, "size": [3, 32, 32]}, "e": None, "f": {}})
    assert flat == {"a.b.c": 1, "a.size": [3, 32, 32], "e": None, "f": {}}


def test_collect_results_adds_identity_columns(tmp_path: Path) -> None:
    rec = results_record(identity={"preprocessing": {"input_size": [3, 32, 32]}})
    write_run(tmp_path / "new", rec)
    write_run(tmp_path / "old", results_record())
    runs = collect_results(tmp_path).set_index("run_dir")
    new, old = runs.loc[str(tmp_path / "new")], runs.loc[str(tmp_path / "old")]
    assert new["run_id"] == rec["run_id"] and new["identity_hash"] == rec["identity_hash"]
    assert new["identity.preprocessing.input_size"] == "[3, 32, 32]"
    assert not new["identity_derived"] and old["identity_derived"]
    assert pd.isna(old["run_id"]) and old["identity_hash"].startswith("legacy-")
    assert pd.isna(old["identity.preprocessing.input_size"])
    assert json.loads(old["identity"])["backbone"] == "resnet50"


def test_collect_results_counts_a_copied_run_once(tmp_path: Path) -> None:
    rec = results_record(identity={})
    write_run(tmp_path / "b", rec)
    write_run(tmp_path / "a_copy", rec)  # same run_id: a backup of the same run
    write_run(tmp_path / "c", results_record(identity={}))  # another run
    write_run(tmp_path / "old1", results_record())  # no run_id: never merged
    write_run(tmp_path / "old2", results_record())
    runs = collect_results(tmp_path)
    assert len(runs) == 4
    assert (tmp_path / "b").as_posix() not in runs["run_dir"].tolist()  # a_copy sorts first
    assert runs.attrs["duplicate_copies"] == [str(tmp_path / "b" / "results.json")]
