"""What made a run, recorded in its checkpoint and results.json and compared wherever it is reused.

A path or a name says nothing about what is behind it; these records do: the store's
fingerprints (source files, settings, stored pixels and split), the hashes of the images the
model trained and was validated on, the resolved run config, and an identity hash that is
equal exactly for runs that may be averaged as seeds of one experiment.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from arttl.data.store import read_hashes, split_file
from arttl.errors import ConfigError
from arttl.results import flatten_identity as flatten
from arttl.results import hash_identity, new_run_id
from arttl.training.checkpointing import _payload

__all__ = ["check_resume", "new_run_id", "read_provenance", "run_identity", "split_members"]

PROVENANCE_KEY = "arttl_provenance"  # the checkpoint entry (see ArtClassifier.on_save_checkpoint)

# Keys a resumed run may change: they extend or observe a run without changing its result.
RESUME_MAY_CHANGE = (
    "trainer.max_epochs",
    "trainer.max_steps",
    "trainer.max_time",
    "trainer.enable_progress_bar",
    "trainer.log_every_n_steps",
    "callbacks.early_stopping.patience",
    "callbacks.progress",
    "callbacks.checkpoint.dirpath",  # follows run_dir
    "callbacks.checkpoint.save_last",  # older runs wrote last.ckpt from there; now callbacks.last
    "callbacks.last",
    "logger",
    "paths",
    "run_dir",
    "resume",
    "resume_allow",
    "ckpt_path",
    "num_workers",
    "data.num_workers",
    "store.dir",  # the store's contents are compared instead (content_hash)
    "store.check_source",
    "save_stable_checkpoint",
    "experiment",
    "name",
    "hparams_search",
)
# Keys that never make two runs different experiments (the seed is what seeds vary); epochs and
# early stopping do, so they are part of the identity.
_EXTEND_ONLY = (
    "trainer.max_epochs",
    "trainer.max_steps",
    "trainer.max_time",
    "callbacks.early_stopping.patience",
)
NOT_IDENTITY = (*(k for k in RESUME_MAY_CHANGE if k not in _EXTEND_ONLY), "seed")


def hashes_to_tensor(hashes: list[str] | None) -> torch.Tensor:
    """16-hex-digit image hashes as one int64 tensor (compact inside a checkpoint)."""
    values = np.array([int(h, 16) for h in hashes or []], dtype=np.uint64)
    return torch.from_numpy(values.view(np.int64).copy())


def split_members(store_dir: str | Path) -> dict[str, torch.Tensor]:
    """Hashes of the source files of the train and val images (what the model has seen)."""
    return {s: hashes_to_tensor(read_hashes(split_file(store_dir, s))) for s in ("train", "val")}


def _covered(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def config_differences(
    saved: Mapping[str, Any], current: Mapping[str, Any], ignore: tuple[str, ...]
) -> list[str]:
    """``key: saved -> current`` for every leaf that differs, except under ``ignore``."""
    a, b = flatten(saved), flatten(current)
    out = []
    for key in sorted(set(a) | set(b)):
        if _covered(key, ignore):
            continue
        if json.dumps(a.get(key), default=str) != json.dumps(b.get(key), default=str):
            out.append(f"{key}: {a.get(key, '<absent>')!r} -> {b.get(key, '<absent>')!r}")
    return out


def read_provenance(ckpt: str | Path) -> dict[str, Any]:
    return dict(_payload(ckpt).get(PROVENANCE_KEY) or {})


def check_resume(
    ckpt: str | Path,
    saved: Mapping[str, Any],
    config: Mapping[str, Any],
    store: Mapping[str, Any],
    allow: tuple[str, ...] = (),
) -> None:
    """A run continues only with what it started with: same data, preprocessing, model, optimiser,
    batch size. Only extensions (more epochs, patience), observers (loggers) and the keys the user
    vouches for (``resume_allow``) may change. ``saved`` is ``read_provenance(ckpt)``."""
    if not saved.get("run_config"):
        print(
            f"warning: {ckpt} was written by an older arttl without its run config; "
            "cannot check that this resume uses the same settings."
        )
        return
    diffs = config_differences(saved["run_config"], config, (*RESUME_MAY_CHANGE, *allow))
    old_store = (saved.get("store") or {}).get("content_hash")
    if old_store and old_store != store.get("content_hash"):
        diffs.append(
            f"store contents: {old_store} -> {store.get('content_hash')} (the images, labels or "
            "split differ from the ones this run started with)"
        )
    if diffs:
        shown = "\n  - ".join(diffs[:15]) + ("\n  - ..." if len(diffs) > 15 else "")
        raise ConfigError(
            f"resume/ckpt_path: {str(ckpt)!r} was trained with other settings; resuming would "
            f"mix two experiments in one result:\n  - {shown}\n"
            "Resume with the original settings (only trainer.max_epochs, early-stopping patience, "
            "loggers and worker counts may change), or start a new run without resume "
            "(resume_allow=[key,...] accepts keys you know do not change the result)."
        )


def run_identity(
    config: Mapping[str, Any],
    data_config: Mapping[str, Any],
    store: Mapping[str, Any],
    weights_digest: str | None,
    tasks: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], str]:
    """(identity, identity_hash): everything that changes a result except the seed.

    Two runs with the same hash differ only by seed, so ``report`` may average them. ``tasks``
    (runs of a multi-task store: the classes per task trained and each task's loss weight) is
    part of it then: two subsets of one store's tasks are two experiments. One-task stores
    leave it out, so their identity (and hash) is what it was before multi-task runs existed.
    """
    c = dict(config)
    weights = (c.get("backbone") or {}).get("weights")
    settings = {
        k: v
        for k, v in flatten({k: c.get(k) for k in ("data", "trainer", "callbacks")}).items()
        if not _covered(k, NOT_IDENTITY) and not _covered(k, _OBSERVERS)
    }
    identity = {
        "source": {
            "dataset": store.get("source"),
            "challenge": store.get("challenge"),
            "root": store.get("root"),
            "fingerprint": store.get("source_fingerprint"),
        },
        "store": {
            "fingerprint": store.get("content_hash"),
            "split_seed": store.get("seed"),
            "split_by": store.get("split_by"),
            "shorter_side": store.get("shorter_side"),
            "format": store.get("image_format"),
        },
        "preprocessing": json.loads(json.dumps(dict(data_config), default=list)),
        "backbone": {"name": (c.get("backbone") or {}).get("name")},
        "weights": {"value": None if weights is None else str(weights), "digest": weights_digest},
        "mode": c.get("mode"),
        "training": settings,
    }
    if tasks is not None:
        identity["tasks"] = json.loads(json.dumps(dict(tasks), default=str))
    return identity, hash_identity(identity)


# Trainer/callback keys that only observe a run (bars, logging cadence, devices it ran on).
_OBSERVERS = (
    "trainer.accelerator",
    "trainer.devices",
    "trainer.num_nodes",
    "trainer.strategy",
    "trainer.enable_model_summary",
    "trainer.enable_progress_bar",
    "trainer.log_every_n_steps",
    "trainer.default_root_dir",
    "trainer._target_",
    "trainer.deterministic",
    "trainer.benchmark",
    "callbacks.progress",
    "callbacks.checkpoint",  # where checkpoints go, not what they hold
    "callbacks.last",
    "callbacks.lr_monitor",
    "callbacks.model_summary",
)
