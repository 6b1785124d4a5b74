"""Unknown config-group choices are refused before Hydra starts, with close matches."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from arttl.cli import check_group_choices
from arttl.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("backbone=resnet51", r"backbone='resnet51' is not valid.*did you mean resnet50"),
        ("mode=offtheshelf", r"mode='offtheshelf'.*did you mean off_the_shelf"),
        ("+experiment=rijks_materal", r"experiment='rijks_materal'.*did you mean rijks_material"),
        ("dataset=pandora", r"dataset='pandora'.*did you mean pandora18k"),
        ("mode=fine_tune,scratc", r"mode='scratc'.*did you mean scratch"),  # a multirun list
    ],
)
def test_unknown_group_choice_names_close_matches(arg: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_group_choices([arg])


def test_valid_choices_and_other_overrides_pass() -> None:
    check_group_choices(
        [
            "+experiment=demo",
            "backbone=vgg19,resnet50",
            "mode=off_the_shelf",
            "backbone.name=resnet51",  # a timm name, checked later by the validator
            "hydra/launcher=local",
            "trainer=ddp",
            "logger=null",
            "backbone=choice(vgg19,resnet50)",
        ]
    )


def test_cli_exits_2_before_hydra_with_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "arttl.train", "+experiment=demo", "backbone=resnet51"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: backbone='resnet51' is not valid")
    assert "Traceback" not in done.stderr and "Could not find" not in done.stderr
