"""Training: every mode and experiment runs; what each mode freezes; transfer; determinism."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import lightning as L
import pandas as pd
import pytest
import torch

from arttl.data import features as features_mod
from arttl.data.tasks import challenge_name
from arttl.errors import ConfigError
from arttl.models.classifier import ArtClassifier
from arttl.models.transfer import layer_groups
from arttl.training.run import build_model, run_training
from tests.fixtures.raw_datasets import (
    make_antwerp,
    make_imagefolder,
    make_multitask_metadata,
    make_museum_metadata,
    make_pandora,
    make_rijks_csv,
    make_wikiart_lists,
)
from tests.fixtures.training import FAST, compose_train

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def folder(tmp_path):
    return make_imagefolder(tmp_path / "raw", n_per_class=10, classes=("a", "b", "c", "d"))


def short(ds, *extra: str) -> list[str]:
    return [
        "dataset=imagefolder",
        f"dataset.root={ds.root}",
        "trainer.max_epochs=2",
        *extra,
    ]


@pytest.mark.parametrize("mode", ["off_the_shelf", "fine_tune", "partial", "scratch", "gradual"])
def test_every_mode_fast_dev_run(tmp_path, folder, mode):
    cfg = compose_train(tmp_path, *short(folder), f"mode={mode}", "trainer.fast_dev_run=true")
    record = run_training(cfg, cfg.run_dir)
    assert record["mode"] == mode and record["num_classes"] == 4
    assert record["test"]["top1"] is not None and record["test"]["top5"] is None
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["test"]["top3"] == pytest.approx(record["test"]["top3"])


def _transfer_ckpt(root: Path, num_classes: int = 3, source: str = "rijks_type") -> Path:
    model = ArtClassifier(
        "test_resnet", num_classes, [f"r{i}" for i in range(num_classes)], image_size=64
    )
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, max_epochs=0)
    trainer.strategy.connect(model)
    path = root / "checkpoints" / source / "test_resnet-fine_tune.ckpt"
    path.parent.mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(path)
    return path


EXPERIMENTS = {
    "rijks_material": lambda t: make_rijks_csv(t, challenge="material"),
    "rijks_type": lambda t: make_rijks_csv(t, challenge="type"),
    "rijks_artist": lambda t: make_rijks_csv(t, challenge="artist"),
    "antwerp_type": lambda t: make_antwerp(t, challenge="type"),
    "antwerp_artist": lambda t: make_antwerp(t, challenge="artist"),
    "antwerp_type_from_rijks": lambda t: make_antwerp(t, challenge="type"),
    "antwerp_artist_from_rijks": lambda t: make_antwerp(t, challenge="artist"),
    "pandora18k": lambda t: make_pandora(t),
    "wikiart_style": lambda t: make_wikiart_lists(t),
    "demo": None,
    "demo_paintings": None,
    "demo_objects": None,
    "demo_objects_from_paintings": None,
    "study_wikiart": lambda t: make_imagefolder(t),
    "study_ahe": lambda t: make_imagefolder(t),
    "study_ahe_from_wikiart": lambda t: make_imagefolder(t),
    "study_met": lambda t: make_museum_metadata(t),
    "study_objects": lambda t: make_museum_metadata(t),
    "study_objects_from_wikiart": lambda t: make_museum_metadata(t),
    "study_objects_from_met": lambda t: make_museum_metadata(t),
    "rijks_multitask": lambda t: make_rijks_csv(t, challenge="material"),
    "egypt_multitask": lambda t: make_multitask_metadata(t, n_per_class=30),
    "study_multitask": lambda t: make_multitask_metadata(t, n_per_class=30),
}


def test_every_experiment_preset_is_listed():
    presets = {p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml")}
    assert presets == set(EXPERIMENTS)


@pytest.mark.parametrize("experiment", sorted(EXPERIMENTS))
def test_every_experiment_fast_dev_run(tmp_path, experiment):
    overrides = [f"+experiment={experiment}", "backbone=test_resnet", "trainer.fast_dev_run=true"]
    builder = EXPERIMENTS[experiment]
    if builder is not None:
        ds = builder(tmp_path / "raw")
        overrides.append(f"dataset.root={ds.root}")
        overrides += [f"++dataset.reader.{k}={_hydra_value(v)}" for k, v in ds.options.items()]
    # demo: its images are found in the checkout although paths.root_dir is a temp folder
    if experiment.endswith("_from_rijks"):
        _transfer_ckpt(tmp_path)
        overrides.append("source_experiment=rijks_type")
    if experiment == "demo_objects_from_paintings":
        _transfer_ckpt(tmp_path, num_classes=7, source="demo_paintings")
    if experiment.startswith("study_") and "_from_" in experiment:
        _transfer_ckpt(tmp_path, num_classes=7, source="study_" + experiment.split("_from_")[1])
    cfg = compose_train(tmp_path, *overrides)
    if experiment.startswith("demo"):
        demo = {"demo": "images", "demo_paintings": "paintings"}.get(experiment, "objects")
        assert cfg.dataset.root == str(REPO / "data" / "demo" / demo)
    record = run_training(cfg, cfg.run_dir)
    assert record["experiment"] == experiment
    assert record["challenge"] == challenge_name(cfg.dataset.challenge)
    if "multitask" in experiment:  # one network, one head per task of the preset
        assert list(record["tasks"]) == list(cfg.dataset.challenge)
    assert record["val"]["loss"] is not None
    if experiment.startswith("study_"):  # the study's CPU budget and its own store
        assert cfg.backbone.image_size == (64 if "ahe" in experiment else 128)
        assert cfg.store.max_per_class
        assert Path(cfg.store.dir).name == experiment.split("_from_")[0]
    if experiment in ("study_met", "study_objects"):  # one museum / the others
        museums = set(pd.read_csv(Path(cfg.store.dir) / "splits.csv")["path"].map(
            lambda p: Path(p).name[:3]))  # fmt: skip
        assert museums == ({"MET"} if experiment == "study_met" else {"CLE"})


def _hydra_value(value) -> str:
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_hydra_value(v)}" for k, v in value.items()) + "}"
    return "'" + str(value) + "'"


def _backbone_state(model: ArtClassifier) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.backbone.state_dict().items()}


def test_off_the_shelf_freezes_backbone_and_extracts_features_once(tmp_path, folder, monkeypatch):
    calls = []
    real = features_mod.extract

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(features_mod, "extract", counting)
    overrides = short(folder, "mode=off_the_shelf", "backbone.weights=none")
    cfg = compose_train(tmp_path, *overrides)
    L.seed_everything(cfg.seed)  # the same initial weights as the run builds
    model = build_model(cfg, ["a", "b", "c", "d"], "x")
    before = _backbone_state(model)
    first = run_training(cfg, cfg.run_dir)
    assert len(calls) == 3  # train, val, test
    ckpt = ArtClassifier.from_checkpoint(first["checkpoint"])
    after = ckpt.backbone.state_dict()
    for name, tensor in before.items():  # weights and BatchNorm running stats alike
        assert torch.equal(tensor, after[name]), name
    assert not torch.equal(ckpt.head.weight, model.head.weight)
    cfg2 = compose_train(tmp_path, *overrides, "run_dir=" + str(tmp_path / "run2"))
    second = run_training(cfg2, cfg2.run_dir)
    assert len(calls) == 3  # every split came from the cache
    assert second["test"] == first["test"]


def test_partial_changes_only_the_top_groups(tmp_path, folder):
    cfg = compose_train(tmp_path, *short(folder, "mode=partial", "mode.partial_fraction=0.4"))
    L.seed_everything(cfg.seed)
    model = build_model(cfg, ["a", "b", "c", "d"], "x")
    before = {k: v.detach().clone() for k, v in model.backbone.named_parameters()}
    groups = layer_groups(model.backbone)
    n_top = round(len(groups) * 0.4)
    top = {n for g in groups[-n_top:] for n in g}
    record = run_training(cfg, cfg.run_dir)
    stable = tmp_path / "checkpoints" / cfg.name / "test_resnet-partial.ckpt"
    assert cfg.name.startswith("imagefolder_class__")  # no preset: named after its source
    assert record["stable_checkpoint"] == str(stable) and stable.is_file()  # *_from_* name it
    after = dict(ArtClassifier.from_checkpoint(stable).backbone.named_parameters())
    changed = {n for n, t in before.items() if not torch.equal(t, after[n])}
    assert changed and changed <= top
    assert set(model.trainable) == top
    # frozen BatchNorm layers keep their running statistics too (they stay in eval mode)
    frozen_bn = {n.rsplit(".", 1)[0] for n in before if n not in top and n.endswith("bn1.weight")}
    assert frozen_bn, "the test needs a frozen BatchNorm layer"
    ckpt_buffers = dict(
        ArtClassifier.from_checkpoint(record["checkpoint"]).backbone.named_buffers()
    )
    for name, buf in model.backbone.named_buffers():
        if name.rsplit(".", 1)[0] in frozen_bn:
            assert torch.equal(buf, ckpt_buffers[name]), name


def test_checkpoint_transfer_loads_backbone_bit_identically(tmp_path):
    ckpt = _transfer_ckpt(tmp_path, num_classes=3)
    source = ArtClassifier.from_checkpoint(ckpt)
    target = ArtClassifier("test_resnet", 5, list("abcde"), weights=str(ckpt), image_size=64)
    for name, tensor in source.backbone.state_dict().items():
        assert torch.equal(tensor, target.backbone.state_dict()[name]), name
    assert target.head.out_features == 5 and source.head.out_features == 3
    with pytest.raises(ConfigError, match="test_resnet"):
        ArtClassifier("test_efficientnet", 5, list("abcde"), weights=str(ckpt), image_size=64)


def test_missing_source_checkpoint_names_the_command(tmp_path):
    ds = make_antwerp(tmp_path / "raw")
    cfg = compose_train(tmp_path, "+experiment=antwerp_type_from_rijks", f"dataset.root={ds.root}")
    with pytest.raises(ConfigError, match=r"arttl.train \+experiment=rijks_type"):
        run_training(cfg, cfg.run_dir)


def test_resuming_a_checkpoint_of_other_classes_is_a_clear_error(tmp_path, folder):
    ckpt = _transfer_ckpt(tmp_path, num_classes=3)  # r0, r1, r2; the folder has a, b, c, d
    cfg = compose_train(tmp_path, *short(folder), f"ckpt_path={ckpt}")
    with pytest.raises(
        ConfigError, match=r"trained on 3 classes \(r0, r1, r2\).*has 4 \(a, b, c, d\)"
    ):
        run_training(cfg, cfg.run_dir)
    assert not (tmp_path / "run" / "results.json").exists()


def test_same_seed_same_metrics(tmp_path, folder):
    results = []
    for i in range(2):
        cfg = compose_train(
            tmp_path, *short(folder), "trainer.max_epochs=2", f"run_dir={tmp_path}/run{i}"
        )
        results.append(run_training(cfg, cfg.run_dir))
    assert results[0]["val"] == results[1]["val"]
    assert results[0]["test"] == results[1]["test"]


def test_the_lowest_val_loss_checkpoint_is_the_one_tested(tmp_path, folder):
    # lr 0.1 on this tiny set overshoots after epoch 3, so the best epoch is not the last
    cfg = compose_train(tmp_path, *short(folder), "trainer.max_epochs=6", "mode.optimizer.lr=0.1")
    record = run_training(cfg, cfg.run_dir)
    history = pd.read_csv(tmp_path / "run" / "metrics.csv").dropna(subset=["val/loss"])
    losses = history.set_index("epoch")["val/loss"]
    assert losses.idxmin() != losses.index.max(), "the setup needs a best epoch before the last"
    assert record["best_epoch"] == losses.idxmin()
    assert record["val"]["loss"] == pytest.approx(losses.min(), rel=1e-4, abs=1e-6)


def test_paper_defaults_reach_the_optimizer_and_callbacks(tmp_path, folder):
    from hydra.utils import instantiate

    expected = {
        "off_the_shelf": (torch.optim.RMSprop, {"lr": 1e-3, "alpha": 0.9, "eps": 1e-8}),
        "fine_tune": (torch.optim.SGD, {"lr": 1e-3, "momentum": 0.9, "nesterov": True}),
    }
    for mode, (cls, settings) in expected.items():
        cfg = compose_train(tmp_path, *short(folder), f"mode={mode}")
        optimizer = instantiate(cfg.mode.optimizer)([torch.nn.Parameter(torch.zeros(1))])
        assert isinstance(optimizer, cls)
        assert {k: optimizer.defaults[k] for k in settings} == settings
        assert cfg.data.batch_size == 8  # FAST; the paper's 32 is the config default below
    defaults = compose_train(tmp_path, fast=False)
    assert defaults.data.batch_size == 32
    assert defaults.callbacks.early_stopping.patience == 7
    assert defaults.callbacks.early_stopping.monitor == defaults.callbacks.checkpoint.monitor
    assert defaults.callbacks.checkpoint.monitor == "val/loss"


def test_bad_choices_fail_before_training(tmp_path, folder):
    cfg = compose_train(tmp_path, *short(folder), "backbone.name=resnet5O")
    with pytest.raises(ConfigError, match="resnet50"):
        run_training(cfg, cfg.run_dir)
    cfg = compose_train(tmp_path, *short(folder), "mode=partial", "mode.partial_fraction=1.5")
    with pytest.raises(ConfigError, match="partial_fraction"):
        run_training(cfg, cfg.run_dir)


def test_store_of_another_challenge_is_refused(tmp_path):
    ds = make_pandora(tmp_path / "raw")
    base = ["dataset=pandora18k", f"dataset.root={ds.root}", "store.dir=" + str(tmp_path / "s")]
    run_training(
        *(lambda c: (c, c.run_dir))(compose_train(tmp_path, *base, "trainer.fast_dev_run=true"))
    )
    cfg = compose_train(tmp_path, *base, "dataset.challenge=artist")
    with pytest.raises(
        ConfigError, match=r"holds a store of another source \(pandora18k / movement"
    ):
        run_training(cfg, cfg.run_dir)


def test_divergence_stops_with_a_clear_error(tmp_path, folder):
    from arttl.errors import TrainingDiverged

    cfg = compose_train(tmp_path, *short(folder), "mode.optimizer.lr=1e30")
    with pytest.raises(TrainingDiverged, match=r"optimizer\.lr"):
        run_training(cfg, cfg.run_dir)
    # the CLI turns it into exit code 3 and one line, no traceback
    cli = subprocess.run(
        [sys.executable, "-m", "arttl.train", *FAST, *short(folder), "mode.optimizer.lr=1e30",
         f"paths.root_dir={tmp_path}", f"hydra.run.dir={tmp_path}/cli"],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    assert cli.returncode == 3, cli.stderr[-2000:]
    assert "training loss became" in cli.stderr and "Traceback" not in cli.stderr


def test_late_divergence_keeps_the_last_good_checkpoint(tmp_path, folder):
    from arttl.errors import TrainingDiverged

    blow_up = "+callbacks.blow_up={_target_:tests.fixtures.pause.BlowUpAt,epoch:1}"
    cfg = compose_train(tmp_path, *short(folder), "trainer.max_epochs=3", blow_up)
    with pytest.raises(TrainingDiverged, match="at epoch 1"):
        run_training(cfg, cfg.run_dir)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=False)
    assert saved["epoch"] == 0  # the epoch before the divergence
    assert all(
        torch.isfinite(t).all() for t in saved["state_dict"].values() if t.is_floating_point()
    )
    assert ArtClassifier.from_checkpoint(last).class_names == ["a", "b", "c", "d"]


def test_multirun_2x2_writes_four_results(tmp_path, folder):
    cmd = [
        sys.executable,
        "-m",
        "arttl.train",
        "-m",
        *short(folder),
        "trainer.fast_dev_run=true",
        "backbone=test_resnet",
        "backbone.name=test_resnet,test_efficientnet",
        "mode=fine_tune,off_the_shelf",
        "trainer.accelerator=cpu",
        "callbacks.progress=null",
        "data.num_workers=0",
        f"paths.root_dir={tmp_path}",
        f"hydra.sweep.dir={tmp_path}/multirun",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    results = sorted((tmp_path / "multirun").rglob("results.json"))
    assert len(results) == 4
    combos = {
        (json.loads(p.read_text())["backbone"], json.loads(p.read_text())["mode"]) for p in results
    }
    assert combos == {
        (b, m) for b in ("test_resnet", "test_efficientnet") for m in ("fine_tune", "off_the_shelf")
    }


def test_recorded_config_leaves_out_the_datamodule_restatements(tmp_path, folder):
    from arttl.training.run import recorded_config

    one = recorded_config(compose_train(tmp_path, *short(folder), "data.num_workers=0"))
    two = recorded_config(compose_train(tmp_path, *short(folder), "data.num_workers=3"))
    assert "datamodule" not in one["mode"] and not {"images", "features"} & set(one["data"])
    # identity and resume see data.num_workers once, not again through data.images
    assert one["data"]["num_workers"] == 0 and two["data"]["num_workers"] == 3
    assert {**one, "data": None} == {**two, "data": None}
