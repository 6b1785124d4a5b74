"""Crash-safe checkpoints and resume: atomic saves, RNG state in the checkpoint, finding last.ckpt."""

from __future__ import annotations

import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins.io import TorchCheckpointIO

from arttl.atomic import atomic_path, write_text_atomic
from arttl.config_rules import check_resume_source
from arttl.errors import ConfigError
from arttl.models.classifier import task_classes

LAST = "last.ckpt"
HISTORY = "metrics.csv"
HISTORY_BEFORE_RESUME = "metrics.before_resume.csv"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch.save IO, but a kill mid-save leaves the previous file, not half of one.

    Lightning 2.6 already saves through an fsspec transaction (a temporary file moved into
    place on commit); this adds an fsync before the rename and arttl's cleanup of temporaries
    left by killed writers (``atomic_path``).
    Remote paths (s3://...) keep Lightning's own transaction-based save.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if not isinstance(get_filesystem(path), LocalFileSystem):
            return super().save_checkpoint(checkpoint, path, storage_options)
        with atomic_path(path) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)
        return None


class RNGState(Callback):
    """Store python/numpy/torch(/CUDA) RNG state in every checkpoint and restore it on resume.

    Lightning restores weights, optimiser, scheduler, loops and callback states, but not the
    global RNGs that draw the data order and augmentations of the next epoch; without them a
    resumed run would diverge from an uninterrupted one.
    """

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "python": random.getstate(),
            "numpy": _numpy_state(),
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        random.setstate(state_dict["python"])
        _set_numpy_state(state_dict["numpy"])
        torch.set_rng_state(state_dict["torch"])
        cuda = state_dict.get("cuda")
        if (
            cuda is not None
            and torch.cuda.is_available()
            and len(cuda) == torch.cuda.device_count()
        ):
            torch.cuda.set_rng_state_all(cuda)


def _numpy_state() -> dict[str, Any]:
    """numpy's RNG state as tensors and numbers: checkpoints must load with weights_only=True."""
    _, key, pos, has_gauss, gauss = np.random.get_state()
    return {
        "key": torch.from_numpy(key.astype(np.int64)),
        "pos": int(pos),
        "gauss": [has_gauss, gauss],
    }


def _set_numpy_state(state: dict[str, Any]) -> None:
    key = state["key"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", key, state["pos"], *state["gauss"]))


@dataclass(frozen=True)
class ResumePlan:
    """What a run continues from: the run folder to write into and the checkpoint (or none)."""

    run_dir: Path
    ckpt_path: Path | None = None
    finished: bool = False  # resume=true found results.json there: nothing left to do


def _payload(ckpt: str | Path) -> dict[str, Any]:
    """A checkpoint's dict; mmap reads the small entries without loading the weights."""
    return torch.load(ckpt, map_location="cpu", weights_only=False, mmap=True)


def checkpoint_epoch(ckpt: str | Path) -> int:
    """The epoch a Lightning checkpoint was saved in."""
    return int(_payload(ckpt)["epoch"])


def _names(values: list[str], n: int = 5) -> str:
    return ", ".join(values[:n]) + (", ..." if len(values) > n else "")


def _describe_tasks(tasks: dict[str, list[str]]) -> str:
    return "; ".join(f"{t} ({len(c)} classes: {_names(c, 4)})" for t, c in tasks.items())


def check_same_classes(
    ckpt: str | Path, class_names: list[str], tasks: dict[str, list[str]] | None = None
) -> None:
    """A run continues only with the tasks and classes it was trained on (the head has one
    output per class of each task, in order). ``tasks``: this run's (task -> class names), None
    for a one-task store; a checkpoint of another task set is refused before any work."""
    hparams = _payload(ckpt).get("hyper_parameters", {})
    saved = list(hparams.get("class_names") or [])
    if hparams.get("tasks") or tasks is not None:
        before = task_classes(hparams)
        now = tasks or {"(one task)": list(class_names)}
        if list(before.items()) != list(now.items()):
            raise ConfigError(
                f"ckpt_path/resume: {str(ckpt)!r} was trained on the tasks "
                f"{_describe_tasks(before)}, but this run trains {_describe_tasks(now)}. Resume "
                "with the same dataset.challenge, tasks and store, or start a transfer with "
                "backbone.weights=<that .ckpt> instead (its backbone is kept, the heads are new)."
            )
        return
    if saved != list(class_names):
        raise ConfigError(
            f"ckpt_path/resume: {str(ckpt)!r} was trained on {len(saved)} classes "
            f"({_names(saved)}) but this run's store has {len(class_names)} "
            f"({_names(list(class_names))}). Resume with the same dataset and challenge, or start "
            "a transfer to the new classes with backbone.weights=<that .ckpt> instead."
        )


def _matches(ckpt: Path, identity: dict[str, str]) -> bool:
    """Whether ``ckpt`` was written by a run of the same experiment / backbone / mode."""
    try:
        payload = _payload(ckpt)
    except Exception:  # an unreadable file is never resumed from
        return False
    hparams = payload.get("hyper_parameters", {})
    return all(hparams.get(k) == v for k, v in identity.items())


def plan_resume(
    run_dir: str | Path,
    resume: bool,
    ckpt_path: str | None,
    identity: dict[str, str],
    search_siblings: bool = True,
) -> ResumePlan:
    """Decide where a run continues from.

    ``ckpt_path``: continue from that file, writing into ``run_dir``. ``resume``: the run's
    own ``checkpoints/last.ckpt`` (a re-launched multirun job has the same folder), else the
    newest sibling run (``outputs/<experiment>/<backbone>-<mode>/*/checkpoints/last.ckpt``)
    whose checkpoint has the same experiment/backbone/mode; its folder is then reused. A chosen
    folder with results.json is ``finished``. Nothing found: a fresh run in ``run_dir``.
    """
    run_dir = Path(run_dir)
    check_resume_source(resume, ckpt_path)  # not both; a given file exists
    if ckpt_path:
        return ResumePlan(run_dir, Path(ckpt_path))
    if not resume:
        return ResumePlan(run_dir)
    own = run_dir / "checkpoints" / LAST
    if (run_dir / "results.json").is_file() or own.is_file():
        return _plan(run_dir, own if own.is_file() else None)
    if search_siblings and run_dir.parent.is_dir():
        candidates = sorted(
            (p for p in run_dir.parent.glob(f"*/checkpoints/{LAST}") if p.parents[1] != run_dir),
            key=lambda p: p.stat().st_mtime,
            reverse=True,
        )
        for ckpt in candidates:
            if _matches(ckpt, identity):
                return _plan(ckpt.parents[1], ckpt)
    return ResumePlan(run_dir)


def _plan(run_dir: Path, ckpt: Path | None) -> ResumePlan:
    return ResumePlan(run_dir, ckpt, finished=(run_dir / "results.json").is_file())


def continue_in(run_dir: Path, ckpt_path: Path) -> Path:
    """The checkpoint to continue from, in ``run_dir``: ``ckpt_path`` itself when it is there;
    from another run's folder, a copy of it as ``run_dir/checkpoints/last.ckpt`` whose checkpoint
    callbacks name this folder, with that run's best checkpoint copied beside it.

    Hand-written because Lightning restores a ModelCheckpoint's best score only when its folder
    is unchanged: the new run would otherwise pick its best among the resumed epochs alone.
    Every write is atomic and deterministic, so DDP ranks doing it at once agree."""
    here = run_dir / "checkpoints"
    if ckpt_path.resolve().parent == here.resolve():
        return ckpt_path
    payload = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    for key, state in (payload.get("callbacks") or {}).items():
        if key.startswith("ModelCheckpoint") and state.get("dirpath") not in (None, str(here)):
            _move_checkpoint_state(state, here)
    here.mkdir(parents=True, exist_ok=True)
    with atomic_path(here / LAST) as tmp:
        torch.save(payload, tmp)
    return here / LAST


def _move_checkpoint_state(state: dict[str, Any], here: Path) -> None:
    """One ModelCheckpoint's state, its files copied into ``here`` (a missing best file drops the
    score: the best is then chosen among the epochs still to come, as Lightning would)."""
    best = Path(state.get("best_model_path") or "")
    if state.get("best_model_score") is not None and not best.is_file():
        state.update(best_model_score=None, best_model_path="", best_k_models={})
        state.update(kth_best_model_path="", kth_value=None)
    moved: dict[str, str] = {}
    for path in {*state.get("best_k_models", {}), state.get("best_model_path") or ""} - {""}:
        target = here / Path(path).name
        if Path(path).is_file() and target.name != LAST:  # continue_in writes last.ckpt itself
            with atomic_path(target) as tmp:
                shutil.copyfile(path, tmp)
        moved[path] = str(target)
    state["best_k_models"] = {moved[p]: s for p, s in state.get("best_k_models", {}).items()}
    for key in ("best_model_path", "kth_best_model_path"):
        state[key] = moved.get(state.get(key) or "", state.get(key) or "")
    state["last_model_path"] = str(here / LAST) if state.get("last_model_path") else ""
    state["dirpath"] = str(here)


def keep_history(run_dir: Path, ckpt_path: Path) -> None:
    """Set aside the metrics.csv rows up to the checkpoint's epoch before Lightning's CSVLogger
    deletes the file (it starts a fresh metrics.csv in a non-empty folder). Continuing from
    another run's checkpoint (``<run>/checkpoints/*.ckpt``), that run's rows are the ones kept."""
    epoch = checkpoint_epoch(ckpt_path)
    source = ckpt_path.parents[1] if (ckpt_path.parents[1] / HISTORY).is_file() else run_dir
    frames = [
        pd.read_csv(p)
        for p in (source / HISTORY_BEFORE_RESUME, source / HISTORY)
        if p.is_file() and p.stat().st_size > 0
    ]
    if not frames:
        return
    history = pd.concat(frames, ignore_index=True)
    if "epoch" in history:
        history = history[history["epoch"] <= epoch]
    write_text_atomic(run_dir / HISTORY_BEFORE_RESUME, history.to_csv(index=False))


def merge_history(run_dir: Path) -> None:
    """Prepend the rows set aside by :func:`keep_history` to the resumed run's metrics.csv."""
    before = run_dir / HISTORY_BEFORE_RESUME
    if not before.is_file():
        return
    frames = [pd.read_csv(before)]
    if (run_dir / HISTORY).is_file():
        frames.append(pd.read_csv(run_dir / HISTORY))
    write_text_atomic(run_dir / HISTORY, pd.concat(frames, ignore_index=True).to_csv(index=False))
    before.unlink()
