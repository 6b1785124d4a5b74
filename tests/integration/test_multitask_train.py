"""One network, several tasks, end to end: results.json's ``tasks`` section against the
checkpoint's own predictions, θ̂ between one-task and multi-task networks, one feature cache for
every off-the-shelf head of a store, and resume refused across task sets.

The data: ``make_multitask_metadata`` (36 museum objects; type always labelled, material and
period missing for some), test_resnet at 64 px, one epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import lightning as L
import numpy as np
import pytest
import torch

import arttl.data.features as features_mod
from arttl.data.datamodule import StoreDataModule
from arttl.data.store import H5ImageDataset, read_task_classes, split_file
from arttl.errors import ConfigError
from arttl.models.classifier import ArtClassifier
from arttl.training.checkpointing import check_same_classes
from arttl.training.run import build_model, model_tasks, run_training, stable_checkpoint_path
from tests.fixtures.raw_datasets import make_multitask_metadata
from tests.fixtures.training import compose_train, tiny_checkpoint

TASKS = ["type", "material", "period"]


@dataclass
class MultiTaskRun:
    root: Path
    raw_root: Path
    source: Path  # the one-task checkpoint the multi-task run started from (θ̂)
    record: dict[str, Any]

    def compose(self, *extra: str) -> Any:
        return compose_train(
            self.root,
            "dataset=egypt",
            f"dataset.root={self.raw_root}",
            "dataset.reader.label_column={type: Classification, material: Medium, period: Period}",
            "dataset.challenge=[type,material,period]",
            "+dataset.reader.label_map={material: first_word}",
            "backbone.image_size=64",
            "trainer.max_epochs=1",
            "store.fractions=[0.5,0.25,0.25]",
            *extra,
        )

    @property
    def store_dir(self) -> Path:
        return Path(self.compose().store.dir)


@pytest.fixture(scope="module")
def mt(tmp_path_factory: pytest.TempPathFactory) -> MultiTaskRun:
    """A 3-task fine-tuning run whose backbone comes from a one-task arttl checkpoint."""
    root = tmp_path_factory.mktemp("multitask")
    raw = make_multitask_metadata(root / "raw")
    source = tiny_checkpoint(root / "single.ckpt", ["a", "b"])
    run = MultiTaskRun(root, raw.root, source, {})
    cfg = run.compose(f"backbone.weights={source}", f"run_dir={root}/run")
    run.record = run_training(cfg, cfg.run_dir)
    return run


def _np_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    pred = logits.argmax(axis=1)
    return {
        "top1": float(np.mean(pred == labels)),
        "macro_top1": float(np.mean([np.mean(pred[labels == c] == c) for c in np.unique(labels)])),
        "loss": float(-log_p[np.arange(len(labels)), labels].mean()),
    }


@torch.no_grad()
def _predictions(model: ArtClassifier, store_dir: Path, split: str) -> tuple[np.ndarray, ...]:
    dm = StoreDataModule(store_dir, model.data_config, batch_size=16, num_workers=0,
                         tasks=model.task_names)  # fmt: skip
    loader = {"val": dm.val_dataloader, "test": dm.test_dataloader}[split]()
    out = [(model.logits(x), y) for x, y in loader]
    return torch.cat([o[0] for o in out]).numpy(), torch.cat([o[1] for o in out]).numpy()


def test_results_tasks_equal_metrics_recomputed_from_the_checkpoint(mt: MultiTaskRun) -> None:
    record = mt.record
    classes = read_task_classes(split_file(mt.store_dir, "train"))
    assert classes is not None and list(classes) == TASKS
    assert record["challenge"] == "type+material+period"
    assert record["num_classes"] == sum(len(c) for c in classes.values())
    assert list(record["tasks"]) == TASKS
    model = ArtClassifier.from_checkpoint(record["checkpoint"])
    assert model.task_names == TASKS
    for split in ("val", "test"):
        logits, labels = _predictions(model, mt.store_dir, split)
        offset = 0
        for i, task in enumerate(TASKS):
            section = record["tasks"][task]
            assert section["classes"] == classes[task]
            n = len(classes[task])
            has = labels[:, i] >= 0
            assert section["samples"][split] == int(has.sum()) > 0
            want = _np_metrics(logits[has, offset : offset + n], labels[has, i])
            for key, value in want.items():
                assert section[split][key] == pytest.approx(value, abs=1e-5), (split, task, key)
            offset += n
        for key in ("top1", "macro_top1", "loss"):  # top level: the mean over the tasks
            mean = np.mean([record["tasks"][t][split][key] for t in TASKS])
            assert record[split][key] == pytest.approx(mean, abs=1e-6)
    assert record["identity"]["tasks"]["classes"] == classes


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _built(cfg: Any, store_dir: Path) -> ArtClassifier:
    """The model a run of ``cfg`` starts from (the run seeds the same way before building)."""
    L.seed_everything(int(cfg.seed))
    return build_model(cfg, ["unused"], str(store_dir), tasks=model_tasks(cfg, store_dir))


def _check_transfer(cfg: Any, store_dir: Path, source: Path, outputs: int) -> ArtClassifier:
    """Backbone tensors equal the source checkpoint's; the head is the fresh initialisation
    a run without weights gets (same seed), none of the source's head."""
    model = _built(cfg, store_dir)
    saved = torch.load(source, map_location="cpu", weights_only=False)["state_dict"]
    backbone = {k[len("backbone.") :]: v for k, v in saved.items() if k.startswith("backbone.")}
    assert backbone and set(backbone) == set(model.backbone.state_dict())
    for name, tensor in model.backbone.state_dict().items():
        assert torch.equal(tensor, backbone[name]), name
    cfg.backbone.weights = "none"
    fresh = _built(cfg, store_dir)
    assert model.head.out_features == outputs != saved["head.weight"].shape[0]
    assert torch.equal(model.head.weight, fresh.head.weight)
    assert torch.equal(model.head.bias, fresh.head.bias)
    first = next(iter(backbone))
    assert not torch.equal(model.backbone.state_dict()[first], fresh.backbone.state_dict()[first])
    return model


def test_one_task_checkpoint_into_a_multitask_run(mt: MultiTaskRun) -> None:
    assert mt.record["weights"] == str(mt.source)  # the run above trained from it
    cfg = mt.compose(f"backbone.weights={mt.source}")
    assert _check_transfer(cfg, mt.store_dir, mt.source, 8).task_names == TASKS


def test_multitask_checkpoint_into_a_one_task_run(mt: MultiTaskRun) -> None:
    ckpt = Path(mt.record["checkpoint"])
    cfg = mt.compose(f"backbone.weights={ckpt}", "tasks=[material]")
    assert _check_transfer(cfg, mt.store_dir, ckpt, 3).task_names == ["material"]
    # its stable copy never replaces the all-tasks network's
    assert stable_checkpoint_path(cfg).name == "test_resnet-fine_tune-material.ckpt"
    assert stable_checkpoint_path(mt.compose()).name == "test_resnet-fine_tune.ckpt"


def test_off_the_shelf_heads_of_a_store_share_one_feature_cache(mt: MultiTaskRun, monkeypatch):
    """All three tasks, then tasks=[material] from the same θ̂ backbone: the backbone runs
    once per split, the second head trains on the first's cache (its material column)."""
    calls: list[int] = []
    real = features_mod.extract
    monkeypatch.setattr(features_mod, "extract", lambda *a, **k: calls.append(1) or real(*a, **k))
    ckpt = mt.record["checkpoint"]
    common = ("mode=off_the_shelf", f"backbone.weights={ckpt}", "save_stable_checkpoint=false")
    first_cfg = mt.compose(*common, f"run_dir={mt.root}/ots_all")
    first = run_training(first_cfg, first_cfg.run_dir)
    cache = sorted((Path(first_cfg.paths.cache_dir) / "features").glob("*.h5"))
    assert len(calls) == 3 and len(cache) == 3  # one file per split, for every head
    stamps = [p.stat().st_mtime_ns for p in cache]
    train_cache = next(p for p in cache if p.name.startswith("train-"))
    with h5py.File(train_cache, "r") as f:
        shape = f["labels"].shape
    assert shape[1] == 3  # every task's column, whatever the head learns
    assert features_mod._read(train_cache, (shape[0],)) is None  # another layout: re-extracted
    second_cfg = mt.compose(*common, "tasks=[material]", f"run_dir={mt.root}/ots_material")
    second = run_training(second_cfg, second_cfg.run_dir)
    assert len(calls) == 3  # no extraction: the same cache
    assert sorted((Path(first_cfg.paths.cache_dir) / "features").glob("*.h5")) == cache
    assert [p.stat().st_mtime_ns for p in cache] == stamps
    assert list(first["tasks"]) == TASKS
    assert list(second["tasks"]) == ["material"] and second["challenge"] == "material"
    assert second["num_classes"] == len(second["tasks"]["material"]["classes"]) == 3
    assert second["tasks"]["material"]["samples"] == first["tasks"]["material"]["samples"]
    assert second["identity_hash"] != first["identity_hash"]  # another experiment, not a seed
    # the material head learnt and was tested on the material column: recompute its test
    # metrics from the cached features and the store's material labels
    head = ArtClassifier.from_checkpoint(second["checkpoint"])
    with h5py.File(next(p for p in cache if p.name.startswith("test-")), "r") as f:
        features = torch.from_numpy(f["features"][()])
    labels = H5ImageDataset(split_file(mt.store_dir, "test"), tasks=["material"]).labels[:, 0]
    with torch.no_grad():
        logits = head.logits(features).numpy()
    has = labels >= 0
    want = _np_metrics(logits[has], labels[has])
    assert second["tasks"]["material"]["test"] == pytest.approx(
        {**second["test"], **want}, abs=1e-5
    )


def test_resume_with_another_task_set_is_refused(mt: MultiTaskRun, tmp_path) -> None:
    ckpt = Path(mt.record["checkpoint"])
    tasks = model_tasks(mt.compose(), mt.store_dir)
    assert tasks is not None
    check_same_classes(ckpt, tasks["type"], tasks)  # the same task set continues
    other_dir = tmp_path / "resumed"
    cases = {  # config -> what the message says
        "other tasks": (("tasks=[material,type]", f"ckpt_path={ckpt}"),
                        r"trained on the tasks type \(3 classes.*but this run trains material"),
        "one-task checkpoint": ((f"ckpt_path={mt.source}",),
                                r"trained on the tasks .*\(2 classes: a, b\), but this run trains type"),
    }  # fmt: skip
    payload = torch.load(ckpt, map_location="cpu", weights_only=False)
    renamed = [*tasks["material"][:-1], "granite"]  # same tasks, other classes for one of them
    payload["hyper_parameters"]["tasks"]["material"] = renamed
    torch.save(payload, tmp_path / "other_classes.ckpt")
    cases["other classes"] = (
        (f"ckpt_path={tmp_path / 'other_classes.ckpt'}",),
        r"material \(3 classes: .*granite\).*but this run trains .*material \(3 classes",
    )
    for name, (extra, message) in cases.items():
        cfg = mt.compose(*extra, f"run_dir={other_dir}")
        with pytest.raises(ConfigError, match=message):
            run_training(cfg, cfg.run_dir)
        assert not other_dir.exists(), name  # refused before any work


def test_the_independent_spot_check_agrees_task_by_task(mt: MultiTaskRun) -> None:
    """docs/spot_check.py (h5py + timm + numpy, no arttl code) splits the head by task and scores
    each on its labelled test images: the same numbers as results.json."""
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "docs" / "spot_check.py"
    spec = importlib.util.spec_from_file_location("spot_check", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = module.independent_top_k(Path(mt.record["checkpoint"]).parents[1])
    assert [task for task, *_ in rows] == TASKS
    for task, ours, theirs, n in rows:
        assert n == mt.record["tasks"][task]["samples"]["test"]
        assert ours["top1"] == pytest.approx(theirs["top1"], abs=1e-6), task


def test_train_prints_every_task_and_their_mean(mt: MultiTaskRun, capsys) -> None:
    from arttl.train import print_results

    print_results(mt.record)
    lines = capsys.readouterr().out.splitlines()
    for task in TASKS:
        row = next(line for line in lines if f" {task} " in line and " test " in line)
        assert f"{mt.record['tasks'][task]['test']['top1']:.4f}" in row
    mean = next(line for line in lines if "mean over tasks" in line and " test " in line)
    assert f"{mt.record['test']['top1']:.4f}" in mean


@pytest.mark.parametrize("mode", ["partial", "gradual", "scratch"])
def test_every_other_transfer_mode_trains_one_head_per_task(
    mt: MultiTaskRun, tmp_path: Path, mode: str
) -> None:
    extra = ["mode.unfreeze_at_epoch=1", "trainer.max_epochs=2"] if mode == "gradual" else []
    cfg = mt.compose(
        f"mode={mode}", *extra, f"run_dir={tmp_path}/run", "save_stable_checkpoint=false"
    )
    record = run_training(cfg, cfg.run_dir)
    assert list(record["tasks"]) == TASKS and record["mode"] == mode
    for task in TASKS:
        assert record["tasks"][task]["val"]["loss"] is not None
    losses = [record["tasks"][t]["val"]["loss"] for t in TASKS]
    assert record["val"]["loss"] == pytest.approx(sum(losses) / len(losses), abs=1e-5)


def test_the_default_name_of_a_multi_task_run_is_a_valid_folder_name(mt: MultiTaskRun) -> None:
    from arttl.train import check_name

    name = mt.compose().name
    assert name.startswith("egypt_type+material+period__")
    check_name(name)  # `python -m arttl.train dataset.challenge=[...]` without name= runs


def test_resume_never_takes_a_run_of_other_tasks_for_this_one(mt: MultiTaskRun) -> None:
    """resume=true looks for earlier runs of the same experiment/backbone/mode beside this one:
    a tasks=[material] run must not continue (or be skipped as) the finished all-tasks run."""
    from arttl.training.run import resume_plan

    same = mt.compose("resume=true", f"run_dir={mt.root}/again")
    assert resume_plan(same, Path(same.run_dir)).finished  # the all-tasks run is found
    subset = mt.compose("resume=true", "tasks=[material]", f"run_dir={mt.root}/material")
    plan = resume_plan(subset, Path(subset.run_dir))
    assert not plan.finished and plan.ckpt_path is None  # a fresh run of its own
