"""`pip install .` (a wheel, not editable) runs every command from any folder: the wheel carries
conf/ and the embedded demo images, and installs the arttl-* console scripts (issue 12)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "src", "conf", "data/demo")


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 300) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{cmd}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.mark.slow  # builds a wheel, makes a venv and trains one demo epoch: about a minute
def test_wheel_install_runs_the_demo_from_an_empty_folder(tmp_path: Path) -> None:
    # A copy of the sources: building in the checkout would leave build/ behind in it.
    src = tmp_path / "src"
    for name in SOURCES:
        target = src / name
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, target)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HYDRA_FULL_ERROR")}
    env["HF_HUB_OFFLINE"] = "1"
    pip = [sys.executable, "-m", "pip"]
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"),
          str(src)], tmp_path, env)  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("arttl-*.whl")

    # A fresh venv without the system's packages; the heavy dependencies (torch, ...) come from
    # this venv through a .pth line instead of a download.
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, env)
    python = venv / "bin" / "python"
    _run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
         tmp_path, env)  # fmt: skip
    purelib = _run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        tmp_path,
        env,
    ).strip()
    (Path(purelib) / "zz_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    empty = tmp_path / "empty"
    empty.mkdir()
    conf_dir = _run(
        [str(python), "-c", "from arttl.config import CONF_DIR; print(CONF_DIR)"], empty, env
    ).strip()
    assert Path(conf_dir).is_relative_to(venv), conf_dir  # the packaged copy, not the checkout

    out = _run(
        [str(venv / "bin" / "arttl-train"), "+experiment=demo", "trainer.max_epochs=1",
         "backbone=test_resnet", "data.num_workers=0"],
        empty,
        env,
        timeout=600,
    )  # fmt: skip
    (results,) = (empty / "outputs" / "demo" / "test_resnet-scratch").glob("*/results.json")
    assert results.is_file() and (results.parent / "train.log").stat().st_size > 0
    assert (empty / "checkpoints" / "demo" / "test_resnet-scratch.ckpt").is_file()
    last = out.strip().splitlines()[-2:]
    assert last[0].startswith("checkpoint: ") and last[0].endswith("/checkpoints/best.ckpt")
    assert last[1].startswith("stable copy: checkpoints/demo/test_resnet-scratch.ckpt (")
    for cmd in ("prepare", "evaluate", "predict", "report", "saliency", "export"):
        assert (venv / "bin" / f"arttl-{cmd}").is_file()
