"""`python -m arttl.train` with a bad command line exits non-zero with one message, no traceback.

A real process each (a few seconds of imports), so these live here; the checks they go through
are unit-tested in tests/unit/test_cli.py and tests/unit/test_bad_configs.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "data" / "demo" / "images"


def _cli(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "arttl.train",
        "backbone=test_resnet",
        f"dataset.root={DEMO}",
        f"paths.root_dir={tmp_path}",
        f"hydra.run.dir={tmp_path}/run",
        *overrides,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("overrides", "code", "message"),
    [
        (
            ["+trainer.max_epoch=3"],
            2,
            "error: trainer.max_epoch: unknown key; did you mean max_epochs",
        ),
        (["mode.optimizer.lr=-0.1"], 2, "error: mode.optimizer.lr=-0.1 must be a number > 0"),
    ],
)
def test_cli_exits_non_zero_without_a_traceback(tmp_path, overrides, code, message):
    done = _cli(tmp_path, *overrides)
    assert done.returncode == code, done.stderr[-2000:]
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "data").exists()


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
