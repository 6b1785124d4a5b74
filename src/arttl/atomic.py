"""Atomic writes: a crash leaves the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_HOST = re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _recover_siblings(path: Path) -> None:
    """Clean up after writers of ``path`` that were killed: their temporaries are never read.

    A killed directory swap may have left the previous version renamed aside and nothing at
    ``path``; it is put back so that the old store survives a crash during ``force=true``.
    """
    # Only this host's writers can be checked: on a shared (cluster) filesystem another
    # node's temporaries may belong to a live job.
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(tmp|old)-{re.escape(_HOST)}-(\d+)$")
    for sibling in path.parent.iterdir():
        match = pattern.match(sibling.name)
        if not match or _pid_alive(int(match.group(2))):
            continue
        if match.group(1) == "old" and not path.exists():
            os.replace(sibling, path)
        else:
            _remove(sibling)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto ``path`` only if the block succeeds.

    Works for files and for whole directories (a store); a directory being replaced is first
    renamed aside, so a crash at any moment leaves either the old or the new version.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _recover_siblings(path)
    tmp = path.with_name(f".{path.name}.tmp-{_HOST}-{os.getpid()}")
    old = path.with_name(f".{path.name}.old-{_HOST}-{os.getpid()}")
    try:
        yield tmp
        if tmp.is_file():
            _fsync_file(tmp)  # the data reaches the disk before the rename makes it visible
        if tmp.is_dir() and path.is_dir():
            os.replace(path, old)
        os.replace(tmp, path)
        if old.exists():
            _remove(old)
    finally:
        if tmp.exists() or tmp.is_symlink():
            _remove(tmp)


def write_text_atomic(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    return write_text_atomic(
        path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n"
    )
