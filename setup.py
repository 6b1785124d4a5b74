"""Build hook: a wheel carries conf/ and the embedded demo images (data/demo/), which stay at the
repository's top level. They are copied into ``arttl/_bundle/`` (same layout) when the wheel is
built; an editable install (``pip install -e .``) reads them in the checkout instead.
Everything else about the package is in pyproject.toml.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
BUNDLED = ("conf", "data/demo")  # folders, relative to the repository root
SKIPPED = ("*.py", "*.pyc", "__pycache__", ".*")  # data/demo/make_subset.py is a maintainer's tool


class BuildPyWithBundle(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # arttl.config finds conf/ and data/demo/ in the checkout
        bundle = Path(self.build_lib) / "arttl" / "_bundle"
        shutil.rmtree(bundle, ignore_errors=True)  # no stale files from an earlier build
        if not (HERE / "conf" / "train.yaml").is_file():
            raise RuntimeError(f"{HERE}/conf/train.yaml is missing: build from a full checkout.")
        for folder in BUNDLED:
            shutil.copytree(HERE / folder, bundle / folder, ignore=shutil.ignore_patterns(*SKIPPED))


setup(cmdclass={"build_py": BuildPyWithBundle})
