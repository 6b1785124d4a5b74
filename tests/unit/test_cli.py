"""Unknown config-group choices are refused before Hydra starts, with close matches (the real
process exiting 2 with one line: tests/integration/test_cli_errors.py)."""

from __future__ import annotations

import pytest

from arttl.cli import check_group_choices
from arttl.errors import ConfigError


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


def test_a_target_refusing_its_arguments_is_one_line(capsys: pytest.CaptureFixture) -> None:
    """A ConfigError raised inside hydra.utils.instantiate (e.g. data.gpu_decode=true without
    CUDA, from the datamodule) ends like any ConfigError: its own line, exit 2, not Hydra's
    'Error in call to target ... full_key' wrapping."""
    from hydra.errors import InstantiationException

    from arttl.cli import user_errors

    @user_errors
    def task() -> None:
        try:
            raise ConfigError("data.gpu_decode=true needs CUDA; use data.gpu_decode=false.")
        except ConfigError as err:
            raise InstantiationException("Error in call to target 'x'") from err

    with pytest.raises(SystemExit) as done:
        task()
    assert done.value.code == 2
    assert capsys.readouterr().err == (
        "error: data.gpu_decode=true needs CUDA; use data.gpu_decode=false.\n"
    )


def test_output_console_off_a_terminal_is_wide_and_never_breaks_a_line(capsys) -> None:
    """A pipe or log file: 160 columns (rich's 80 folded predict's labels and paths mid-word),
    and a long line stays one line, so a printed path can be copied whole."""
    from arttl.cli import output_console

    console = output_console()
    assert not console.is_terminal and console.width == 160
    path = "/data/prepared/" + "x" * 200 + "/duplicates.csv"
    console.print(f"see {path}")
    assert capsys.readouterr().out == f"see {path}\n"
