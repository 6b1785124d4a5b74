"""The three loggers the README promises each record the per-epoch metrics of a real run, and
`logger` presets compose by name."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from arttl.cli import check_group_choices
from arttl.training.run import build_loggers, run_training
from tests.fixtures.raw_datasets import make_imagefolder
from tests.fixtures.training import compose_train


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_imagefolder(tmp_path_factory.mktemp("raw"), n_per_class=8, classes=("a", "b", "c"))


def _run(root: Path, folder, logger: str) -> Path:
    cfg = compose_train(
        root,
        "dataset=imagefolder",
        f"dataset.root={folder.root}",
        "trainer.max_epochs=2",
        "backbone.image_size=32",
        f"logger={logger}",
    )
    run_training(cfg, cfg.run_dir)
    return Path(cfg.run_dir)


def _csv_epochs(run_dir: Path) -> list[int]:
    history = pd.read_csv(run_dir / "metrics.csv")
    return sorted(history.dropna(subset=["val/top1"])["epoch"].astype(int).unique().tolist())


def test_tensorboard_logger_writes_events_and_csv(tmp_path, folder):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = _run(tmp_path, folder, "tensorboard")
    assert _csv_epochs(run_dir) == [0, 1]
    events = sorted(run_dir.rglob("events.out.tfevents.*"))
    assert events, f"no TensorBoard event file under {run_dir}"
    acc = EventAccumulator(str(events[0].parent)).Reload()
    assert len(acc.Scalars("val/top1")) == 2


def test_mlflow_logger_records_the_run_in_a_local_store(tmp_path, folder):
    mlflow = pytest.importorskip("mlflow")
    _run(tmp_path, folder, "mlflow")
    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("default")
    assert experiment is not None, "no MLflow experiment named after the arttl experiment"
    (run,) = client.search_runs([experiment.experiment_id])
    history = client.get_metric_history(run.info.run_id, "val/top1")
    assert len(history) == 2
    assert run.data.params["backbone"] == "test_resnet"


def test_logger_presets_combine_by_name_and_each_is_overridden(tmp_path):
    pytest.importorskip("tensorboard")
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    check_group_choices(["logger=[csv,tensorboard]"])  # the command line takes the list too
    cfg = compose_train(tmp_path, "logger=[csv,tensorboard]", "logger.csv.name=curves")
    loggers = build_loggers(cfg)
    assert [type(x) for x in loggers] == [CSVLogger, TensorBoardLogger]
    assert loggers[0].name == "curves" and loggers[1].name == "tensorboard"
    assert loggers[0].save_dir == str(tmp_path / "run")
    # a preset that brings csv along, a logger dropped by name, and none at all
    assert list(compose_train(tmp_path, "logger=tensorboard").logger) == ["csv", "tensorboard"]
    assert build_loggers(compose_train(tmp_path, "logger.csv=null")) is False
    assert build_loggers(compose_train(tmp_path, "~logger")) is False
