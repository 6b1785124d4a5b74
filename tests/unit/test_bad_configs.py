"""Bad configs fail before any data is touched, each with a message naming key, value and fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from arttl.config_schema import check_train_config
from arttl.errors import ConfigError
from tests.fixtures.training import compose_train

DEMO = Path(__file__).resolve().parents[2] / "data" / "demo" / "images"

BAD = {
    "unknown key": (
        ["+trainer.max_epoch=3"],
        r"trainer\.max_epoch: unknown key; did you mean max_epochs",
    ),
    "unknown optimizer arg": (
        ["+mode.optimizer.momentun=0.9"],
        r"momentun: unknown key; did you mean momentum",
    ),
    "unknown top-level key": (["+sead=1"], r"sead: unknown key; did you mean seed"),
    "unknown group key": (
        ["+data.batchsize=8"],
        r"data\.batchsize: unknown key; did you mean batch_size",
    ),
    "wrong type": (["data.batch_size=abc"], r"data\.batch_size='abc' must be an integer"),
    "wrong bool type": (["data.augment=maybe"], r"data\.augment='maybe' must be true/false"),
    "lr <= 0": (["mode.optimizer.lr=0"], r"mode\.optimizer\.lr=0 must be a number > 0"),
    "batch_size < 1": (["data.batch_size=0"], r"data\.batch_size=0 must be an integer >= 1"),
    "max_epochs < 1": (["trainer.max_epochs=0"], r"trainer\.max_epochs=0 must be an integer >= 1"),
    "patience < 0": (
        ["callbacks.early_stopping.patience=-1"],
        r"patience=-1 must be an integer >= 0",
    ),
    "image_size < 16": (
        ["backbone.image_size=8"],
        r"backbone\.image_size=8 must be null or an integer >= 16",
    ),
    "fractions": (
        ["store.fractions=[0.5,0.5,0.5]"],
        r"store\.fractions=\[0\.5, 0\.5, 0\.5\] must be three",
    ),
    "max_per_class": (
        ["store.max_per_class=2"],
        r"store\.max_per_class=2 must be null or an integer >= 3",
    ),
    "scale": (["data.scale=[0.9,0.1]"], r"data\.scale=\[0\.9, 0\.1\] must be two numbers"),
    "partial fraction 0": (
        ["mode=partial", "mode.partial_fraction=0"],
        r"mode\.partial_fraction=0 must be in \(0, 1\]",
    ),
    "partial fraction > 1": (
        ["mode=partial", "mode.partial_fraction=1.5"],
        r"partial_fraction=1\.5 must be in \(0, 1\]",
    ),
    "scratch with weights": (
        ["mode=scratch", "backbone.weights=imagenet"],
        r"mode=scratch trains from random",
    ),
    "gradual without unfreeze epoch": (
        ["mode=gradual", "mode.unfreeze_at_epoch=null"],
        r"mode\.unfreeze_at_epoch=None must be an integer >= 0 for mode=gradual",
    ),
    "gradual without lr ratio": (
        ["mode=gradual", "mode.backbone_lr_ratio=null"],
        r"mode\.backbone_lr_ratio=None",
    ),
    "unknown mode": (
        ["mode.name=finetune"],
        r"mode\.name='finetune' is not valid.*did you mean fine_tune",
    ),
    "unknown backbone": (
        ["backbone.name=resnet5O"],
        r"backbone\.name='resnet5O' is not a timm model; did you mean",
    ),
    "imagenet not cached": (
        ["backbone=resnet18"],
        r"backbone\.weights=imagenet: no ImageNet weights for 'resnet18'",
    ),
    "missing weights file": (
        ["backbone.weights=/nope/w.safetensors"],
        r"backbone\.weights='/nope/w\.safetensors': file not found",
    ),
    "missing root": (["dataset.root=/nope/images"], r"dataset\.root='/nope/images' does not exist"),
    "required root": (["dataset=imagefolder", "dataset.root=???"], r"dataset\.root is required"),
    "monitor typo": (
        ["callbacks.early_stopping.monitor=val_loss"],
        r"monitor='val_loss' is not valid.*did you mean val/loss",
    ),
    "bad target": (
        ["callbacks.checkpoint._target_=lightning.Nope"],
        r"checkpoint\._target_='lightning\.Nope' cannot be imported",
    ),
    "accelerator": (
        ["trainer.accelerator=gpus"],
        r"trainer\.accelerator='gpus' is not valid.*did you mean gpu",
    ),
    "resume and ckpt_path": (
        ["resume=true", "ckpt_path=/nope.ckpt"],
        r"resume=true and ckpt_path='/nope\.ckpt'",
    ),
    "missing ckpt_path": (["ckpt_path=/nope.ckpt"], r"ckpt_path='/nope\.ckpt': file not found"),
    # multi-task: tasks, task_weights and store.stratify_on name tasks of dataset.challenge
    "task not in challenge": (
        ["dataset.challenge=[class,period]", "tasks=[class,artist]"],
        r"tasks=\['class', 'artist'\]: 'artist' is not a task of dataset\.challenge=\['class', "
        r"'period'\]; train a subset",
    ),
    "tasks of a one-task challenge": (
        ["tasks=[period]"],
        r"tasks=\['period'\]: 'period' is not a task of dataset\.challenge=\['class'\]",
    ),
    "task named twice": (
        ["dataset.challenge=[class,period]", "tasks=[class,class]"],
        r"tasks=\['class', 'class'\] names a task twice",
    ),
    "weight of an untrained task": (
        ["dataset.challenge=[class,period]", "tasks=[class]", "task_weights={period: 2}"],
        r"task_weights\.period=2: 'period' is not a trained task \(\['class'\]\); weight one",
    ),
    "every task weight 0": (
        ["dataset.challenge=[class,period]", "task_weights={class: 0, period: 0}"],
        r"task_weights=\{'class': 0, 'period': 0\}: every trained task .* has weight 0.*> 0",
    ),
    "stratify on another task": (
        ["dataset.challenge=[class,period]", "store.stratify_on=artist"],
        r"store\.stratify_on='artist' is not one of dataset\.challenge=\['class', 'period'\]",
    ),
    "label map of another task": (
        ["dataset.challenge=[class,period]", "+dataset.reader.label_map={artist: first_word}"],
        r"dataset\.reader\.label_map\.artist: 'artist' is not one of this run's tasks",
    ),
}


@pytest.fixture(autouse=True)
def no_imagenet_cache(monkeypatch, tmp_path):
    """Offline with an empty Hugging Face cache: ImageNet weights cannot be had up front."""
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_config_is_refused_with_its_message(tmp_path, case):
    overrides, message = BAD[case]
    cfg = compose_train(tmp_path, f"dataset.root={DEMO}", *overrides)
    with pytest.raises(ConfigError, match=message):
        check_train_config(cfg)
    assert not (tmp_path / "data").exists()  # nothing was prepared or cached


def test_good_configs_pass(tmp_path):
    for overrides in (
        [],
        ["+experiment=demo", "backbone=test_resnet"],
        ["trainer=ddp"],
        ["mode=gradual"],
        ["dataset.challenge=[class,period]", "tasks=[period]", "task_weights={period: 2}"],
        [
            "dataset.challenge=[class,period]",
            "task_weights={class: 0}",
            "+store.stratify_on=period",
        ],
    ):
        check_train_config(compose_train(tmp_path, f"dataset.root={DEMO}", *overrides))


def test_several_problems_are_reported_together(tmp_path):
    cfg = compose_train(
        tmp_path, f"dataset.root={DEMO}", "data.batch_size=0", "mode.optimizer.lr=-1"
    )
    with pytest.raises(ConfigError, match=r"2 config problems") as err:
        check_train_config(cfg)
    assert "data.batch_size=0" in str(err.value) and "mode.optimizer.lr=-1" in str(err.value)


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA"
)
def test_gpu_decode_without_cuda_is_refused_before_any_work(tmp_path):
    """A config rule now, not first when the datamodule is built (after the store is prepared)."""
    cfg = compose_train(tmp_path, f"dataset.root={DEMO}", "data.gpu_decode=true")
    with pytest.raises(ConfigError, match=r"data\.gpu_decode=true decodes JPEGs with nvJPEG"):
        check_train_config(cfg)
    assert not (tmp_path / "data").exists()
