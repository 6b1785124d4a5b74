"""The schema as code (arttl.config_schema) and the cross-key rules (arttl.config_rules), on plain
dicts: one composed config, changed per test, so each check runs without Hydra."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from arttl.config_schema import check_train_config, resolved
from arttl.data.build import StoreSettings
from arttl.errors import ConfigError
from tests.fixtures.training import compose_train

DEMO = Path(__file__).resolve().parents[2] / "data" / "demo" / "images"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("schema")
    config = resolved(compose_train(root, f"dataset.root={DEMO}"))
    check_train_config(config)  # the starting point is valid
    return config


def problems(config: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as err:
        check_train_config(config)
    return str(err.value)


@pytest.fixture
def c(base: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(base)


def test_unknown_key_names_close_matches(c):
    c["data"]["batchsize"] = 8
    assert problems(c).startswith("data.batchsize: unknown key; did you mean batch_size")


def test_unknown_argument_of_a_target_is_checked_against_its_signature(c):
    c["trainer"]["max_epoch"] = 3
    c["dataset"]["reader"]["group_regexp"] = "x"
    text = problems(c)
    assert "trainer.max_epoch: unknown key; did you mean max_epochs" in text
    assert "dataset.reader.group_regexp: unknown key; did you mean group_regex" in text


def test_wrong_type_names_key_value_and_type(c):
    c["data"]["augment"] = "maybe"
    assert problems(c) == "data.augment='maybe' must be true/false."
    c["data"]["augment"], c["seed"] = True, True  # a bool is no integer
    assert problems(c) == "seed=True must be an integer >= 0; e.g. seed=42."


def test_out_of_range_and_unknown_choice(c):
    c["store"]["quality"] = 101
    assert problems(c) == "store.quality=101 must be an integer in [1, 100]; e.g. 90."
    c["store"]["quality"], c["store"]["split_by"] = 90, "lable"
    assert "store.split_by='lable' is not valid; choose one of: group, label" in problems(c)
    assert "did you mean label?" in problems(c)


def test_cross_key_rules_run_once_the_schema_holds(c):
    c["mode"]["name"], c["mode"]["partial_fraction"] = "partial", 0
    c["resume"], c["ckpt_path"] = True, "/nope.ckpt"
    text = problems(c)
    assert text.startswith("2 config problems:")
    assert "mode.partial_fraction=0 must be in (0, 1]" in text
    assert "resume=true and ckpt_path='/nope.ckpt'" in text
    c["data"]["batch_size"] = 0  # a schema problem: the rules wait until it is fixed
    assert problems(c) == "data.batch_size=0 must be an integer >= 1; the paper used 32."


def test_several_problems_are_reported_together(c):
    c["data"]["batchsize"] = 8
    c["data"]["hflip"] = 2
    c["mode"]["optimizer"]["lr"] = -1
    c["mode"]["optimizer"]["momentun"] = 0.9
    text = problems(c)
    assert text.startswith("4 config problems:\n  - ")
    for part in (
        "data.batchsize: unknown key; did you mean batch_size",
        "data.hflip=2 must be a number in [0, 1]; 0 turns flips off.",
        "mode.optimizer.lr=-1 must be a number > 0; the paper used 1e-3.",
        "mode.optimizer.momentun: unknown key; did you mean momentum?",
    ):
        assert part in text


def test_loggers_as_a_list_or_a_dict_and_target_nodes_anywhere(c):
    csv = {"_target_": "lightning.pytorch.loggers.CSVLogger", "save_dir": "/tmp", "name": ""}
    c["mode"]["datamodule"] = {"_target_": "torch.utils.data.DataLoader", "batch_size": 8}
    for loggers in ([csv], {"csv": csv, "off": None}, None):
        c["logger"] = loggers
        check_train_config(c)
    c["logger"] = {"csv": {**csv, "save_dirr": "/tmp"}}
    c["mode"]["datamodule"]["batchsize"] = 8
    text = problems(c)
    assert "logger.csv.save_dirr: unknown key; did you mean save_dir" in text
    assert "mode.datamodule.batchsize: unknown key; did you mean batch_size" in text


def test_store_settings_share_the_config_messages():
    with pytest.raises(ConfigError, match=r"^store\.quality=0 must be an integer in \[1, 100\]"):
        StoreSettings(quality=0)
    with pytest.raises(ConfigError, match=r"^store\.fractions=\[0\.5, 0\.5, 0\.5\] must be three"):
        StoreSettings(fractions=(0.5, 0.5, 0.5))
    with pytest.raises(ConfigError, match=r"store\.format=raw .* needs store\.shorter_side"):
        StoreSettings(shorter_side=None, format="raw")


def test_multi_task_keys_are_typed(c):
    c["dataset"]["challenge"] = ["class", "style"]
    c["dataset"]["reader"]["label_map"] = {"style": "first_word"}  # arttl's, not the reader's
    c["store"]["stratify_on"] = "style"
    check_train_config(c)
    c["dataset"]["challenge"] = []
    c["store"]["stratify_on"] = 3
    c["task_weights"] = {"style": -1}
    text = problems(c)
    assert "dataset.challenge" in text and "store.stratify_on" in text
    assert "task_weights.style=-1 must be a number >= 0" in text


def test_the_multi_task_preset_composes_with_its_label_maps(tmp_path):
    cfg = compose_train(tmp_path, "+experiment=egypt_multitask")
    assert list(cfg.dataset.challenge) == ["type", "material", "period"]
    assert cfg.name == "egypt_multitask"
    assert "/prepared/egypt_type+material+period__" in cfg.store.dir  # one store for all tasks
    maps = cfg.dataset.reader.label_map
    assert set(maps) == {"material", "period"} and maps.material.faience == "faience"
