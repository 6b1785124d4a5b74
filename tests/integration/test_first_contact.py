"""What a newcomer sees first (issue 12): a quiet demo that says where it wrote, one error path
for every command, runs named after their study, and the small things around them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from arttl import evaluate as evaluate_cli
from arttl import export as export_cli
from arttl import predict as predict_cli
from arttl import prepare as prepare_cli
from arttl import report as report_cli
from arttl import saliency as saliency_cli
from arttl import train as train_cli
from arttl.cli import check_group_choices, warning_text
from arttl.config import CONF_DIR
from arttl.errors import ConfigError
from arttl.training.run import run_training
from tests.fixtures.tiny_runs import colour_image, results_record, write_run
from tests.fixtures.training import compose_train, tiny_checkpoint

REPO = Path(__file__).resolve().parents[2]
# What `python -m arttl.train +experiment=demo` printed before issue 12, none of it actionable.
NOISE = (
    "💡 Tip",
    "litlogger",
    "Seed set to",
    "GPU available",
    "TPU available",
    "Previous log files",
    "_pytree",
    "LeafSpec",
    "site-packages",
    "Restoring states",
    "Loaded model weights",
    "not supported by the model summary",  # a bf16 run (CPUs with native bf16, GPUs)
    "Be aware that when using `ckpt_path`",
)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "PYTHONWARNINGS")}
    return {**env, "HF_HUB_OFFLINE": "1"}


def _run(command: list[str], cwd: Path, timeout: int) -> subprocess.CompletedProcess:
    """A command as a user runs it: its own process, offline, output captured."""
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=_env()
    )


def test_off_the_shelf_is_quiet_about_its_frozen_backbone(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "arttl.train", "+experiment=demo", "mode=off_the_shelf"]
    command += ["backbone=test_resnet", "backbone.weights=none", "trainer.max_epochs=1"]
    command += ["data.num_workers=0", f"paths.root_dir={tmp_path}"]
    done = _run([*command, f"hydra.run.dir={tmp_path}/run"], tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for noise in (*NOISE, "eval mode"):
        assert noise not in done.stderr + done.stdout, f"{noise!r}:\n{done.stderr[-3000:]}"


def test_demo_is_quiet_and_ends_with_where_it_wrote(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "arttl.train", "+experiment=demo", "trainer.max_epochs=1"]
    command += ["backbone=test_resnet", "data.num_workers=0", f"paths.root_dir={tmp_path}"]
    done = _run([*command, f"hydra.run.dir={tmp_path}/run"], tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for noise in NOISE:
        assert noise not in done.stderr, f"{noise!r} on stderr:\n{done.stderr[-3000:]}"
        assert noise not in done.stdout, f"{noise!r} on stdout:\n{done.stdout[-3000:]}"
    assert "Traceback" not in done.stderr
    last = done.stdout.strip().splitlines()[-4:]
    assert last[0] == "run folder: run"
    assert last[1].split() == ["results:", "run/results.json"]
    assert last[2] == "checkpoint: run/checkpoints/best.ckpt"  # its own: nothing replaces it
    assert last[3].startswith("stable copy: checkpoints/demo/test_resnet-scratch.ckpt (")
    assert (tmp_path / "run" / "results.json").is_file()
    assert (tmp_path / "checkpoints" / "demo" / "test_resnet-scratch.ckpt").is_file()

    log = (tmp_path / "run" / "train.log").read_text(encoding="utf-8")
    assert "GPU available" in log and "Restoring states" in log  # Lightning's notes: file only
    assert "run folder: run" in log and "val top1=" in log
    assert "💡 Tip" not in log


@pytest.mark.parametrize(
    ("module", "arg", "message"),
    [
        (saliency_cli, "backbone=vgg91", "backbone='vgg91' is not valid"),
        (evaluate_cli, "backbone=resnet51", "backbone='resnet51' is not valid"),
        (predict_cli, "mode=fine_tun", "did you mean fine_tune"),
        (export_cli, "backbone=resnet5", "did you mean resnet50"),
    ],
)
def test_group_typo_exits_2_in_every_command(
    module, arg: str, message: str, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [module.__name__, arg])
    with pytest.raises(SystemExit) as exit_info:
        module.cli()  # what `python -m arttl.<cmd>` and `arttl-<cmd>` both run
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # no run folder


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["arttl.predict", "backbone=resnet50"], "Could not override 'backbone'"),  # Hydra's
        (["arttl.evaluate", "ckpt=missing.ckpt"], "ckpt='missing.ckpt': file not found"),
        (["arttl.train", "name=a/b"], "name='a/b' must be one folder name"),
    ],
)
def test_user_errors_exit_2_and_leave_no_run_folder(
    args: list[str], message: str, tmp_path: Path
) -> None:
    done = _run([sys.executable, "-m", *args], tmp_path, timeout=120)
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.startswith("error: ") and message in done.stderr
    assert "Traceback" not in done.stderr and "HYDRA_FULL_ERROR" not in done.stderr
    assert list(tmp_path.iterdir()) == []  # outputs/evaluate/<date>/ made by Hydra, then removed


def _cli_error(module, args: list[str], tmp_path: Path, monkeypatch, capsys) -> str:
    """Run ``python -m <module> <args>`` in this process from ``tmp_path``; it must exit 2."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [module.__name__, *args])
    with pytest.raises(SystemExit) as exit_info:
        module.cli()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err  # one line, no traceback
    assert list(tmp_path.iterdir()) == []  # the run folder Hydra made, if any, is removed
    return err


@pytest.mark.parametrize("module", [prepare_cli, train_cli])
def test_missing_required_value_names_the_key(module, tmp_path: Path, monkeypatch, capsys) -> None:
    err = _cli_error(module, ["dataset=imagefolder"], tmp_path, monkeypatch, capsys)
    assert "dataset.root is required" in err
    assert "add dataset.root=<folder of the collection>" in err


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        (
            "trainer.max_epoch=3",
            "trainer.max_epoch=3: no such key; did you mean trainer.max_epochs? "
            "(a new key needs a leading +: +trainer.max_epoch=3)",
        ),
        (
            "traner.max_epochs=3",  # a typo in the parent: the whole key suggested
            "traner.max_epochs=3: no such key; did you mean trainer.max_epochs? "
            "(a new key needs a leading +: +traner.max_epochs=3)",
        ),
        (
            "trainer.qqqqq=3",  # nothing close: the plus is the hint
            "trainer.qqqqq=3: no such key (a new key needs a leading +: +trainer.qqqqq=3)",
        ),
    ],
)
def test_key_typo_without_plus_names_close_keys(
    arg: str, message: str, tmp_path: Path, monkeypatch, capsys
) -> None:
    err = _cli_error(train_cli, ["+experiment=demo", arg], tmp_path, monkeypatch, capsys)
    assert err == f"error: {message}\n"


@pytest.mark.parametrize(
    ("module", "args", "message"),
    [
        (
            evaluate_cli,
            ["checkpoints/x.ckpt"],
            "'checkpoints/x.ckpt' is not a key=value override; did you mean "
            "ckpt=checkpoints/x.ckpt?",
        ),
        (predict_cli, ["x.ckpt"], "did you mean ckpt=x.ckpt?"),  # predict needs ckpt and input
        (predict_cli, ["ckpt=x.ckpt", "photos"], "did you mean input=photos?"),
        (export_cli, ["model"], "did you mean ckpt=model?"),
        (train_cli, ["resnet50"], "'resnet50' is not a key=value override; settings are given"),
    ],
)
def test_bare_value_is_not_an_override(
    module, args: list[str], message: str, tmp_path: Path, monkeypatch, capsys
) -> None:
    assert message in _cli_error(module, args, tmp_path, monkeypatch, capsys)


def test_experiment_without_plus_points_to_name() -> None:
    with pytest.raises(ConfigError, match=r"use name=my_study"):
        check_group_choices(["experiment=my_study"])
    with pytest.raises(ConfigError, match=r"\+experiment=demo"):
        check_group_choices(["experiment=demo"])
    check_group_choices(["+experiment=demo", "name=my_study"])


def test_importing_arttl_keeps_the_matplotlib_backend(tmp_path: Path) -> None:
    code = (
        "import matplotlib; matplotlib.use('svg')\n"
        "import arttl.train, arttl.evaluate, arttl.report, arttl.saliency, arttl.predict\n"
        "import arttl.inference.evaluation, arttl.reporting.curves, arttl.explain.figure\n"
        "print(matplotlib.get_backend())\n"
    )
    done = _run([sys.executable, "-c", code], tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "svg"


def test_predict_table_fits_80_columns_with_paths_relative_to_the_input(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    names = ["Rembrandt van Rijn", "Johannes Vermeer", "Frans Hals", "Jan Steen", "Pieter de Hooch"]
    ckpt = tiny_checkpoint(tmp_path / "artists.ckpt", names)
    images = tmp_path / "a folder with a rather long name" / "and another one below it"
    (images / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, rel in enumerate(["img0.png", "img1.png", "sub/a_long_file_name_for_one_image.png"]):
        colour_image((40 * i, 90, 200 - 40 * i), rng).save(images / rel)
    monkeypatch.setenv("COLUMNS", "200")  # a wide terminal: the table still keeps to 80
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        sys,
        "argv",
        ["arttl.predict", f"ckpt={ckpt}", f"input={images}", f"hydra.run.dir={tmp_path}/run"],
    )
    predict_cli.cli()
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line[:1] in "┏┃┡│└" or "top-5" in line]
    assert len(table) >= 5, out
    assert max(len(line) for line in table) <= 80, "\n".join(table)
    assert "img0.png" in out and str(images) not in "".join(table)
    assert "3 predicted, 0 skipped -> run" in out


@pytest.mark.filterwarnings(r"ignore:.*torch\.jit.*deprecated")
def test_export_mismatch_is_arttls_failure_exit_1(tmp_path: Path, monkeypatch, capsys) -> None:
    from arttl.inference import exporting

    ckpt = tiny_checkpoint(tmp_path / "tiny.ckpt", ["a", "b", "c"])
    capsys.readouterr()  # what training the tiny checkpoint printed is not the command's output

    def wrong(path: Path, fmt: str, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(len(x), 3) + 5.0

    monkeypatch.setattr(exporting, "run_exported", wrong)
    out = tmp_path / "model.pt"
    monkeypatch.setattr(
        sys,
        "argv",
        ["arttl.export", f"ckpt={ckpt}", "format=torchscript", f"out={out}",
         f"hydra.run.dir={tmp_path}/run"],
    )  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        export_cli.cli()
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: the exported torchscript model differs from the checkpoint")
    assert "Traceback" not in err
    assert not out.exists()
    assert "differs from the checkpoint" in (tmp_path / "run" / "export.log").read_text()


def _compose(*overrides: str):
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


def test_name_and_experiment_relate_as_conf_train_says() -> None:
    custom = _compose("dataset=imagefolder", "dataset.root=/data/ahe64/train_val")
    assert custom.experiment == "default"
    # no preset: <dataset>_<challenge>__<source tag>, so two collections never share a name
    assert custom.name.startswith("imagefolder_class__ahe64-train_val-")
    other = _compose("dataset=imagefolder", "dataset.root=/data/egypt224/train_val")
    assert other.name.startswith("imagefolder_class__egypt224-train_val-")
    preset = _compose("+experiment=rijks_type")
    assert (preset.name, preset.experiment) == ("rijks_type", "rijks_type")
    variant = _compose("+experiment=rijks_type", "name=rijks_type_lr")
    assert (variant.name, variant.experiment) == ("rijks_type_lr", "rijks_type")
    own = _compose("name=my_study", "backbone=resnet50", "mode=off_the_shelf")
    assert own.experiment == "default"
    run_dir = OmegaConf.select(own, "hydra.run.dir")
    assert run_dir.startswith("outputs/my_study/resnet50-off_the_shelf/")
    assert OmegaConf.select(own, "hydra.sweep.dir").startswith("multirun/my_study/")


def test_stable_checkpoints_are_named_after_the_study(tmp_path: Path) -> None:
    tiny = [
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
    ]
    custom = compose_train(tmp_path, *tiny)  # dataset=demo, no preset
    record = run_training(custom, custom.run_dir)
    # limit_*_batches=1 at batch 8: the metrics are on 8 images of each split, and say so
    assert record["evaluated"] == {"val": 8, "test": 8} and record["samples"]["test"] == 40
    assert custom.name.startswith("demo_class__demo-images-")
    assert record["stable_checkpoint"] == str(
        tmp_path / "checkpoints" / custom.name / "test_resnet-fine_tune.ckpt"
    )
    assert record["experiment"] == "default"  # no preset
    mine = compose_train(tmp_path, *tiny, "name=my_study", f"run_dir={tmp_path}/run2")
    record = run_training(mine, mine.run_dir)
    stable = tmp_path / "checkpoints" / "my_study" / "test_resnet-fine_tune.ckpt"
    assert record["stable_checkpoint"] == str(stable) and stable.is_file()
    assert (tmp_path / "checkpoints" / custom.name / "test_resnet-fine_tune.ckpt").is_file()
    saved = json.loads((tmp_path / "run2" / "results.json").read_text())
    assert saved["stable_checkpoint"] == str(stable)
    assert saved["checkpoint"] == str(tmp_path / "run2" / "checkpoints" / "best.ckpt")


def test_seeds_share_the_stable_copy_loudly_and_keep_their_own_checkpoint(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two seeds of one name, backbone and mode: the stable copy is the last one's (and the log
    says whose it replaced); each results.json names its own best.ckpt, whose evaluation gives
    that run's numbers."""
    from arttl.inference.evaluation import evaluate_checkpoint

    tiny = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "name=seeds"]
    records = []
    for seed in (1, 2):
        cfg = compose_train(tmp_path, *tiny, f"seed={seed}", f"run_dir={tmp_path}/s{seed}")
        with caplog.at_level("WARNING", logger="arttl"):
            records.append(run_training(cfg, cfg.run_dir))
    first, second = records
    assert first["stable_checkpoint"] == second["stable_checkpoint"]
    assert first["checkpoint"] == str(tmp_path / "s1" / "checkpoints" / "best.ckpt")
    assert f"held run {first['run_id']}'s (seed 1, " in caplog.text
    assert caplog.text.count("now holds this run's best checkpoint") == 1  # not for the first
    ev = evaluate_checkpoint(first["checkpoint"], tmp_path / "ev", device="cpu").metrics
    assert ev["top1"] == pytest.approx(first["test"]["top1"]) and ev["run_id"] == first["run_id"]


def test_report_writes_a_new_folder_and_counts_runs(tmp_path: Path, monkeypatch, capsys) -> None:
    runs = tmp_path / "runs"
    write_run(runs / "0", results_record(test={"top1": 0.875}), val_top1=[0.5, 0.9])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        sys, "argv", ["arttl.report", str(runs), "curves=false", "hydra.run.dir=reports/first"]
    )
    report_cli.cli()
    out = capsys.readouterr().out
    assert "1 run -> " in out and "in reports/first (report.md)" in out
    assert (tmp_path / "reports" / "first" / "report.md").is_file()
    assert not (runs / "report").exists()  # the runs folder stays as training left it


def test_out_dir_is_the_run_folder_log_included(tmp_path: Path, monkeypatch, capsys) -> None:
    """out_dir= holds everything the command wrote, its log too: no dated outputs/<cmd>/ folder
    left beside it with only a log in it."""
    runs = tmp_path / "runs"
    write_run(runs / "0", results_record(test={"top1": 0.875}), val_top1=[0.5, 0.9])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["arttl.report", str(runs), "curves=false", "out_dir=paper"])
    report_cli.cli()
    assert (tmp_path / "paper" / "report.md").is_file()
    assert (tmp_path / "paper" / "report.log").is_file()
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize(
    ("formatted", "message"),
    [
        (
            "/x/site-packages/lightning/a.py:12: The dataloader is slow.\n",
            "The dataloader is slow.",
        ),
        (
            "/src/arttl/v.py:318: UserWarning: mode.unfreeze_at_epoch=5 is late.\n"
            "  warnings.warn(\n",
            "mode.unfreeze_at_epoch=5 is late.",
        ),
        ("no location: kept as it is", "no location: kept as it is"),
    ],
)
def test_console_warnings_drop_the_file_and_line(formatted: str, message: str) -> None:
    assert warning_text(formatted) == message


def test_every_command_has_a_console_script() -> None:
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    for cmd in ("prepare", "train", "evaluate", "predict", "report", "saliency", "export"):
        assert f'arttl-{cmd} = "arttl.{cmd}:cli"' in text
        module = __import__(f"arttl.{cmd}", fromlist=["cli"])
        assert callable(module.cli)
