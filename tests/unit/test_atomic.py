"""Atomic writes leave the old or the new version, and clean up after killed writers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from arttl import atomic
from arttl.atomic import atomic_path, write_json_atomic


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name != path.name)


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "results.json"
    write_json_atomic(target, {"v": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == '{\n  "v": 1\n}\n'
    assert _siblings(target) == []


def test_directory_is_swapped_whole(tmp_path: Path) -> None:
    store = tmp_path / "store"
    for version in ("old", "new"):
        with atomic_path(store) as tmp:
            tmp.mkdir()
            (tmp / "train.h5").write_text(version)
    assert (store / "train.h5").read_text() == "new"
    assert _siblings(store) == []


def test_temporaries_of_dead_writers_are_removed_live_ones_kept(tmp_path: Path) -> None:
    target = tmp_path / "store"
    dead = tmp_path / f".store.tmp-{atomic._HOST}-{_dead_pid()}"
    live = tmp_path / f".store.tmp-{atomic._HOST}-1"  # pid 1 is always alive
    other_host = tmp_path / ".store.tmp-elsewhere-123"
    for d in (dead, live, other_host):
        (d / "images").mkdir(parents=True)
    with atomic_path(target) as tmp:
        tmp.write_text("x")
    assert not dead.exists()
    assert live.exists() and other_host.exists()


def test_old_version_renamed_aside_by_a_killed_swap_is_put_back(tmp_path: Path) -> None:
    target = tmp_path / "store"
    aside = tmp_path / f".store.old-{atomic._HOST}-{_dead_pid()}"
    aside.mkdir()
    (aside / "train.h5").write_text("previous")
    with pytest.raises(RuntimeError), atomic_path(target):
        raise RuntimeError("this rebuild fails too")
    assert (target / "train.h5").read_text() == "previous"
    assert not aside.exists()
