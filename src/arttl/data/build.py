"""Turn a source table into the HDF5 split store: decode once (in parallel), split, write atomically."""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
from filelock import FileLock, Timeout
from PIL import Image, ImageOps
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

import arttl
from arttl.atomic import atomic_path
from arttl.config_rules import check_dataset_root
from arttl.config_schema import check_store_settings
from arttl.data.images import ImageRejected, encode_jpeg, load_rgb
from arttl.data.split import assign_splits, cap_per_class
from arttl.data.store import (
    SPLITS,
    incomplete_splits,
    read_attrs,
    split_file,
    write_split,
)
from arttl.data.tasks import (
    TASK_PREFIX,
    challenge_name,
    is_multitask,
    read_tasks,
    task_labels,
    task_list,
)
from arttl.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoreSettings:
    """How images are stored; part of the store's identity (its config hash)."""

    shorter_side: int | None = 384
    quality: int = 90
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    min_per_split: int = 1
    seed: int = (
        42  # the split's seed (store.seed), not the training seed: seed sweeps share a split
    )
    format: str = "jpeg"  # "raw": square uint8 arrays of side shorter_side, no decode at load
    split_by: str = "label"  # "group": every group (artist, ...) in one split; see data.split
    max_per_class: int | None = None  # keep at most this many images per class (seeded), or all
    stratify_on: str | None = None  # several tasks: the one the split stratifies on (None: first)

    def __post_init__(self) -> None:
        check_store_settings(asdict(self))  # the ranges and messages of store.* in a config

    @property
    def raw_shape(self) -> tuple[int, int, int] | None:
        side = int(self.shorter_side or 0)
        return (side, side, 3) if self.format == "raw" else None


SOURCE_MANIFEST = "source_manifest.csv"  # path, size, mtime_ns, label of every source row
DUPLICATES_CSV = "duplicates.csv"
SOURCE_KEYS = ("dataset", "challenge", "root", "reader")  # what makes two stores "the same source"


def config_hash(identity: Any) -> str:
    """A stable hash of everything that decides the store's contents."""
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def store_is_current(store_dir: Path, digest: str) -> bool:
    if incomplete_splits(store_dir):
        return False
    return all(read_attrs(split_file(store_dir, s)).get("config_hash") == digest for s in SPLITS)


def source_manifest(table: pd.DataFrame) -> pd.DataFrame:
    """Every source row with its file's size and modification time: what the store was made of.

    A file whose bytes change gets a new mtime (and usually size), so the fingerprint below
    changes with the contents without reading every file at each `train`.
    """
    sizes, mtimes = [], []
    for path in table["path"]:
        try:
            st = os.stat(path)
            sizes.append(st.st_size)
            mtimes.append(st.st_mtime_ns)
        except OSError:  # unreadable: the decoder rejects it with a reason
            sizes.append(-1)
            mtimes.append(-1)
    manifest = pd.DataFrame({"path": table["path"].astype(str), "size": sizes, "mtime_ns": mtimes})
    for col in ("label", "group", "split"):
        if col in table:  # "" for missing, so the CSV round trip compares equal
            manifest[col] = table[col].astype(object).where(table[col].notna(), "").astype(str)
    return manifest.sort_values("path", kind="stable").reset_index(drop=True)


def manifest_fingerprint(manifest: pd.DataFrame) -> str:
    return config_hash(manifest.astype(str).to_numpy().tolist())


def describe_source_change(old: pd.DataFrame, new: pd.DataFrame) -> str:
    """'3 files added, 1 removed, 2 changed, 1 relabelled' between two manifests (for the log)."""
    a, b = old.set_index("path"), new.set_index("path")
    added = len(b.index.difference(a.index))
    removed = len(a.index.difference(b.index))
    common = a.index.intersection(b.index)
    changed = int(
        (
            (a.loc[common, "size"] != b.loc[common, "size"])
            | (a.loc[common, "mtime_ns"] != b.loc[common, "mtime_ns"])
        ).sum()
    )
    relabelled = 0
    if "label" in a and "label" in b:
        relabelled = int(
            (a.loc[common, "label"].astype(str) != b.loc[common, "label"].astype(str)).sum()
        )
    parts = [
        f"{n} {what}"
        for n, what in (
            (added, "added"),
            (removed, "removed"),
            (changed, "changed"),
            (relabelled, "relabelled"),
        )
        if n
    ]
    return ", ".join(parts) or "file list unchanged"


def _hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def _decode(job: tuple[str, int | None, int, str]) -> tuple[bool, bytes | str, str, str]:
    """(ok, stored bytes or reject reason, hash of the source file, hash of the stored pixels)."""
    path, shorter_side, quality, fmt = job
    try:
        img = load_rgb(path, shorter_side=shorter_side)  # JPEG draft: decoded at reduced scale
        with open(path, "rb") as fh:
            file_hash = _hash(fh.read())
    except ImageRejected as err:
        return False, err.reason, "", ""
    except OSError as err:  # vanished between decode and hashing
        return False, f"unreadable: {err}", "", ""
    if fmt == "raw":
        assert shorter_side is not None
        # Fixed size for a dense array: scale the shorter side to the target, centre-crop the rest.
        img = ImageOps.fit(img, (shorter_side, shorter_side), Image.Resampling.LANCZOS)
        data = np.asarray(img, dtype=np.uint8).tobytes()
        return True, data, file_hash, _hash(data)
    pixels = np.asarray(img, dtype=np.uint8)
    pixel_hash = _hash(f"{pixels.shape}".encode() + pixels.tobytes())
    return True, encode_jpeg(img, quality=quality), file_hash, pixel_hash


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )


def decode_all(
    paths: list[str], pool_file: Path, settings: StoreSettings, num_workers: int
) -> tuple[dict[int, str], list[str], list[str]]:
    """Decode every image into ``pool_file`` in input order.

    Returns {row: reason} for rejects, and per row the hash of the source file and of the
    stored pixels (empty for rejects). ``imap`` keeps order, so the result is identical for
    any worker count.
    """
    jobs = [(p, settings.shorter_side, settings.quality, settings.format) for p in paths]
    rejected: dict[int, str] = {}
    file_hashes = [""] * len(paths)
    pixel_hashes = [""] * len(paths)
    with h5py.File(pool_file, "w") as f, _progress() as progress:
        ds = f.create_dataset("images", (len(paths),), dtype=h5py.vlen_dtype(np.uint8))
        task = progress.add_task("decoding images", total=len(paths))
        if num_workers > 1:
            ctx = mp.get_context("spawn" if os.name == "nt" else "fork")
            with ctx.Pool(num_workers) as pool:
                results = pool.imap(_decode, jobs, chunksize=16)
                _drain(results, ds, rejected, (file_hashes, pixel_hashes), progress, task)
        else:
            _drain(map(_decode, jobs), ds, rejected, (file_hashes, pixel_hashes), progress, task)
    return rejected, file_hashes, pixel_hashes


def _drain(
    results: Any,
    ds: h5py.Dataset,
    rejected: dict,
    hashes: tuple[list[str], list[str]],
    progress: Progress,
    task: Any,
) -> None:
    for i, (ok, value, file_hash, pixel_hash) in enumerate(results):
        if ok:
            ds[i] = np.frombuffer(value, dtype=np.uint8)
            hashes[0][i], hashes[1][i] = file_hash, pixel_hash
        else:
            rejected[i] = value
        progress.advance(task)


def _class_names(
    split: pd.DataFrame, identity: dict[str, Any], settings: StoreSettings
) -> list[str]:
    """The classes a split keeps; fewer than 2 cannot train a classifier."""
    class_names = sorted(split["label"].unique())
    if len(class_names) < 2:
        raise ConfigError(
            f"dataset {identity.get('dataset')!r}/{identity.get('challenge')!r}: only "
            f"{len(class_names)} class(es) left after cleaning and splitting "
            f"(min_per_split={settings.min_per_split}); at least 2 are needed. Check the labels "
            "or lower store.min_per_split."
        )
    return class_names


def settings_dict(settings: StoreSettings) -> dict[str, Any]:
    """The settings as hashed and recorded; an unset max_per_class or stratify_on is left out,
    so stores made before they existed stay current."""
    return {
        k: v
        for k, v in settings.__dict__.items()
        if not (k in ("max_per_class", "stratify_on") and v is None)
    }


def settings_hash(identity: dict[str, Any], settings: StoreSettings) -> str:
    """Hash of the source's identity and the store settings, without the files' fingerprint."""
    source = {k: identity.get(k) for k in SOURCE_KEYS}
    return config_hash({"source": source, "settings": settings_dict(settings)})


def _existing(store_dir: Path) -> dict[str, Any] | None:
    """The train file's attributes of a complete store in ``store_dir`` (None: no usable store)."""
    if incomplete_splits(store_dir):
        return None
    return read_attrs(split_file(store_dir, "train"))


def _source_of(attrs: dict[str, Any]) -> dict[str, Any] | None:
    text = attrs.get("source_identity")
    return json.loads(text) if isinstance(text, str) else None


def _rebuild_reason(
    store_dir: Path,
    old: dict[str, Any],
    source: dict[str, Any],
    settings_digest: str,
    settings: StoreSettings,
    manifest: pd.DataFrame,
) -> str:
    """Why an existing store of the same source no longer matches (said before rebuilding it)."""
    if old.get("settings_hash") != settings_digest:
        before = (
            json.loads(old.get("settings", "{}")) if isinstance(old.get("settings"), str) else {}
        )
        now = json.loads(json.dumps(settings_dict(settings), default=list))
        diffs = [
            f"store.{k}: {before.get(k)!r} -> {now.get(k)!r}"
            for k in dict.fromkeys([*before, *now])  # a key either side may lack (unset = None)
            if before.get(k) != now.get(k)
        ]
        if _source_of(old) != source:
            diffs.append("reader options changed")
        return "settings changed (" + ("; ".join(diffs) or "older arttl store") + ")"
    old_manifest = store_dir / SOURCE_MANIFEST
    if old_manifest.is_file():
        return "the source changed on disk: " + describe_source_change(
            pd.read_csv(old_manifest, keep_default_na=False), manifest.astype({"path": str})
        )
    return "the source changed on disk"


def _check_same_source(store_dir: Path, old: dict[str, Any], source: dict[str, Any]) -> None:
    """Never replace a store of another collection without force=true: it may be someone's."""
    had = _source_of(old)
    keys = ("dataset", "challenge", "root")
    if had is None or all(had.get(k) == source.get(k) for k in keys):
        return
    was = " / ".join(str(had.get(k)) for k in keys)
    now = " / ".join(str(source.get(k)) for k in keys)
    raise ConfigError(
        f"store.dir={str(store_dir)!r} holds a store of another source ({was}); this run asks "
        f"for {now}. Use another store.dir (the default data/prepared/<dataset>_<challenge>__"
        "<source> keeps collections apart), or replace that store with `python -m arttl.prepare "
        "... force=true`."
    )


def _content_hash(split: pd.DataFrame, done: Labelled, settings: StoreSettings) -> str:
    """Identity of what a model sees: stored pixels, labels and split of every image."""
    rows = split[["split", "label", "pixel_hash"]].astype(str).to_numpy().tolist()
    identity: dict[str, Any] = {"rows": rows, "classes": done.class_names}
    if done.task_classes is not None:  # several tasks: every task's labels and classes
        identity |= {"labels": done.labels.tolist(), "tasks": done.task_classes}
    return config_hash({**identity, "settings": settings_dict(settings)})


def _duplicates(split: pd.DataFrame) -> pd.DataFrame:
    """Images with identical stored pixels (exact duplicates), one row each, with their split."""
    dup = split[split.duplicated("pixel_hash", keep=False)]
    cols = ["pixel_hash", "path", "label", "split"]
    return dup.sort_values(["pixel_hash", "path"])[cols].rename(columns={"pixel_hash": "cluster"})


@dataclass
class Labelled:
    """The split rows with their label matrix: one column (one task) or one per task."""

    rows: pd.DataFrame
    labels: np.ndarray  # (N,) class indices, or (N, tasks) with -1 where a task has no label
    class_names: list[str]  # the (first) task's
    task_classes: dict[str, list[str]] | None  # multi-task only: task -> class names
    dropped: list[str] | dict[str, list[str]]  # classes too small for every split (per task)


def label_rows(split: pd.DataFrame, identity: dict[str, Any], settings: StoreSettings) -> Labelled:
    """The classes every split has, per task; rows of the others dropped (one task) or their
    label masked (several tasks: an image keeps the labels it has)."""
    tasks = task_list(identity.get("challenge") or "label")
    if len(tasks) == 1:
        names = _class_names(split, identity, settings)
        index = {name: i for i, name in enumerate(names)}
        labels = np.array([index[lbl] for lbl in split["label"]], dtype=np.int64)
        return Labelled(split, labels, names, None, split.attrs.get("dropped_classes", []))
    where = f"dataset {identity.get('dataset')!r} (root {identity.get('root')})"
    rows, classes, dropped = task_labels(split, tasks, settings.min_per_split, where)
    labels = rows[[TASK_PREFIX + t for t in tasks]].to_numpy(dtype=np.int64).reshape(-1, len(tasks))
    return Labelled(rows, labels, classes[tasks[0]], classes, dropped)


@dataclass(frozen=True)
class StoreKey:
    """What a store is made of: its source, the source files' manifest and the settings."""

    source: dict[str, Any]
    manifest: pd.DataFrame
    source_fp: str
    settings_digest: str
    digest: str

    @classmethod
    def of(cls, table: pd.DataFrame, identity: dict[str, Any], settings: StoreSettings) -> StoreKey:
        manifest = source_manifest(table) if not table.empty else pd.DataFrame(columns=["path"])
        source_fp = manifest_fingerprint(manifest)
        settings_digest = settings_hash(identity, settings)
        digest = config_hash({"settings": settings_digest, "source_fingerprint": source_fp})
        source = {k: identity.get(k) for k in SOURCE_KEYS}
        return cls(source, manifest, source_fp, settings_digest, digest)


def _reuse_or_reason(
    store_dir: Path, key: StoreKey, settings: StoreSettings, force: bool
) -> tuple[dict[str, Any] | None, str | None]:
    """(the reusable store's attributes, None) or (None, why it is rebuilt: None if new)."""
    old = _existing(store_dir)
    if old is None:
        return None, None
    if force:
        return None, "force=true"
    if store_is_current(store_dir, key.digest):
        return old, None
    _check_same_source(store_dir, old, key.source)
    reason = _rebuild_reason(
        store_dir, old, key.source, key.settings_digest, settings, key.manifest
    )
    return None, reason


def build_store(
    table: pd.DataFrame,
    store_dir: str | Path,
    identity: dict[str, Any],
    settings: StoreSettings,
    num_workers: int = 1,
    force: bool = False,
) -> dict[str, Any]:
    """Build (or reuse) the store for ``table``; return a summary (counts, rejects, dropped classes).

    An existing store is reused only when its provenance matches: the same source (dataset,
    challenge, root, reader options), the same settings, and the same files on disk (paths,
    sizes, mtimes, labels). Otherwise it is rebuilt, saying why; a store of another source is
    refused unless ``force``. One process at a time: the jobs of a parallel sweep that need
    the same store wait for the first to build it, then reuse it.
    """
    store_dir = Path(store_dir)
    store_dir.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(store_dir.with_name(f".{store_dir.name}.lock")))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info(f"waiting for another process that is preparing {store_dir}")
        lock.acquire()
    try:
        return _build_or_reuse(table, store_dir, identity, settings, num_workers, force)
    finally:
        lock.release()


def _build_or_reuse(
    table: pd.DataFrame,
    store_dir: Path,
    identity: dict[str, Any],
    settings: StoreSettings,
    num_workers: int,
    force: bool,
) -> dict[str, Any]:
    key = StoreKey.of(table, identity, settings)
    reusable, reason = _reuse_or_reason(store_dir, key, settings, force)
    if reusable is not None:
        return {"reused": True, "store": str(store_dir), **reusable}
    if table.empty:
        raise ConfigError(
            f"dataset.root={identity.get('root')!r}: no images were found to prepare."
        )
    unlabelled = list(table.attrs.get("rejected", []))  # several tasks: images with none of them
    table = cap_per_class(table, settings.max_per_class, settings.seed)
    # Fail before decoding when even a perfect decode would leave < 2 classes.
    label_rows(_assign(table, settings, identity), identity, settings)
    with atomic_path(store_dir) as tmp:
        tmp.mkdir(parents=True)
        done, rejected_df, duplicates = _write_store(
            tmp, table, unlabelled, identity, settings, key, num_workers
        )
    split = done.rows
    counts = split_counts(split)
    return {
        "reused": False,
        "store": str(store_dir),
        "rebuilt_because": reason,
        "counts": counts,
        "num_classes": len(done.class_names),
        "tasks": _task_summary(done),
        "rejected": rejected_df,
        "dropped_classes": done.dropped,
        "duplicates": duplicates,
        "split_by": settings.split_by,
        "capped_rows": table.attrs.get("capped_rows", 0),
        "split_attrs": {k: v for k, v in split.attrs.items() if k != "dropped_classes"},
    }


def _splits_csv(split: pd.DataFrame, done: Labelled) -> pd.DataFrame:
    """splits.csv: path, label (the stratified one), split, group; per task its class name
    (empty where the image has none)."""
    cols = ["path", "label", "split"] + (["group"] if "group" in split else [])
    out = split[cols].copy()
    for task, names in (done.task_classes or {}).items():
        out[TASK_PREFIX + task] = [names[i] if i >= 0 else "" for i in split[TASK_PREFIX + task]]
    return out


def split_counts(split: pd.DataFrame) -> dict[str, int]:
    return {s: int((split["split"] == s).sum()) for s in SPLITS}


def _write_store(
    tmp: Path,
    table: pd.DataFrame,
    unlabelled: list[tuple[str, str]],
    identity: dict[str, Any],
    settings: StoreSettings,
    key: StoreKey,
    num_workers: int,
) -> tuple[Labelled, pd.DataFrame, pd.DataFrame]:
    """Decode, split and label ``table`` into the new store folder ``tmp``: the split files,
    splits.csv, rejected.csv, duplicates.csv and the source manifest."""
    pool_file = tmp / "_decoded.h5"
    rejected, file_hashes, pixel_hashes = decode_all(
        table["path"].tolist(), pool_file, settings, num_workers
    )
    rejected_df = pd.DataFrame(
        [*unlabelled, *((table.at[i, "path"], why) for i, why in rejected.items())],
        columns=["path", "reason"],
    )
    table["source_hash"], table["pixel_hash"] = file_hashes, pixel_hashes
    accepted = table.drop(index=list(rejected)).copy()
    accepted["row"] = accepted.index
    accepted["dup_key"] = accepted["pixel_hash"]
    done = label_rows(_assign(accepted, settings, identity), identity, settings)
    split = done.rows
    duplicates = _duplicates(split)
    attrs = {
        **_store_attrs(identity, settings, key),
        "content_hash": _content_hash(split, done, settings),
        "counts": json.dumps(split_counts(split)),
        "num_classes": len(done.class_names),
        "rejected": len(rejected_df),
        "duplicate_images": len(duplicates),
    }
    _write_splits(tmp, pool_file, done, attrs, settings)
    pool_file.unlink()
    _splits_csv(split, done).to_csv(tmp / "splits.csv", index=False)
    rejected_df.to_csv(tmp / "rejected.csv", index=False)
    duplicates.to_csv(tmp / DUPLICATES_CSV, index=False)
    key.manifest.to_csv(tmp / SOURCE_MANIFEST, index=False)
    return done, rejected_df, duplicates


def _store_attrs(
    identity: dict[str, Any], settings: StoreSettings, key: StoreKey
) -> dict[str, Any]:
    """The attributes every split file carries: where it came from and how it was made."""
    return {
        "source": str(identity.get("dataset")),
        "challenge": challenge_name(identity.get("challenge") or "label"),
        "root": str(identity.get("root")),
        "seed": settings.seed,
        "split_by": settings.split_by,
        "max_per_class": settings.max_per_class or 0,
        "shorter_side": settings.shorter_side or 0,
        "jpeg_quality": settings.quality,
        "image_format": settings.format,
        "config_hash": key.digest,
        "settings_hash": key.settings_digest,
        "settings": json.dumps(settings_dict(settings), default=list),
        "source_identity": json.dumps(key.source, sort_keys=True, default=str),
        "source_fingerprint": key.source_fp,
        "config": json.dumps(identity, sort_keys=True, default=str),
        "arttl_version": arttl.__version__,
    }


def _write_splits(
    tmp: Path, pool_file: Path, done: Labelled, attrs: dict[str, Any], settings: StoreSettings
) -> None:
    split = done.rows
    with h5py.File(pool_file, "r") as pool:
        images = pool["images"]
        for s in SPLITS:
            member = (split["split"] == s).to_numpy()
            part = split[member]
            write_split(
                tmp / f"{s}.h5",
                (images[r].tobytes() for r in part["row"]),
                done.labels[member],
                part["path"].tolist(),
                done.class_names,
                {**attrs, "split": s},
                raw_shape=settings.raw_shape,
                hashes={
                    "source_hashes": part["source_hash"].tolist(),
                    "pixel_hashes": part["pixel_hash"].tolist(),
                },
                task_classes=done.task_classes,
            )


def _task_summary(done: Labelled) -> dict[str, dict[str, Any]] | None:
    """Per task of a multi-task store: classes and labelled images per split (for the summary)."""
    if done.task_classes is None:
        return None
    out = {}
    for i, (task, names) in enumerate(done.task_classes.items()):
        has = done.labels[:, i] >= 0
        counts = {s: int((has & (done.rows["split"] == s).to_numpy()).sum()) for s in SPLITS}
        out[task] = {"classes": len(names), "labelled": counts, "dropped": done.dropped[task]}
    return out


def _assign(table: pd.DataFrame, settings: StoreSettings, identity: dict[str, Any]) -> pd.DataFrame:
    several = is_multitask(identity.get("challenge") or "label")
    try:
        return assign_splits(
            table, settings.fractions, settings.seed, settings.min_per_split, settings.split_by,
            keep_rare=several,  # each task masks its own rare classes (label_rows)
        )  # fmt: skip
    except ConfigError as err:  # say which collection: the split knows only its table
        where = f"dataset {identity.get('dataset')!r} (root {identity.get('root')})"
        raise ConfigError(f"{where}: {err}") from None


def prepare_dataset(
    name: str,
    challenge: str | list[str],
    root: str | Path,
    reader: Any,
    store_dir: str | Path,
    settings: StoreSettings,
    num_workers: int = 1,
    force: bool = False,
    reader_options: dict[str, Any] | None = None,
    check_source: bool = True,
) -> dict[str, Any]:
    """Read a source with ``reader(root=, challenge=)`` and build its store (reused when current).

    A list of challenges (tasks) reads each with the reader and joins them (``data.tasks``);
    ``reader_options["label_map"]`` maps a task's labels to classes (any reader).
    ``check_source=False`` uses a complete store made with the same source identity and
    settings without re-reading the source (it may be gone); the summary says it is unverified.
    """
    remote = is_non_path_root(reader, root)
    tasks = task_list(challenge)
    label_maps = (reader_options or {}).get("label_map")
    identity = {
        "dataset": name,
        "challenge": tasks[0] if len(tasks) == 1 else tasks,
        "root": str(root) if remote or root in (None, "", "???") else str(Path(root).resolve()),
        "reader": reader_options or {},
    }
    if not check_source and not force:
        old = _existing(Path(store_dir))
        if old is not None and old.get("settings_hash") == settings_hash(identity, settings):
            return {"reused": True, "unverified": True, "store": str(store_dir), **old}
    check_dataset_root(name, root, reader, store_dir)
    if len(tasks) == 1 and not label_maps:
        table = reader(root=root, challenge=tasks[0])
    else:
        table = read_tasks(reader, root, tasks, label_maps, settings.stratify_on)
    return build_store(table, store_dir, identity, settings, num_workers=num_workers, force=force)


def is_non_path_root(reader: Any, root: Any) -> bool:
    """Whether ``root`` is meant for ``reader`` without being a path on disk (a hub id, a glob):
    readers that take such roots say so with a ``non_path_root(root)`` attribute."""
    func = getattr(reader, "func", reader)  # functools.partial from Hydra's _partial_
    check = getattr(func, "non_path_root", None)
    return root not in (None, "", "???") and bool(check and check(str(root)))


def store_provenance(store_dir: str | Path) -> dict[str, Any]:
    """What a run records about its store: enough to tell later whether a store is the same one."""
    attrs = read_attrs(split_file(store_dir, "train"))
    keys = (
        "source", "challenge", "root", "seed", "split_by", "shorter_side", "image_format",
        "jpeg_quality", "config_hash", "settings_hash", "source_fingerprint", "content_hash",
        "duplicate_images", "arttl_version",
    )  # fmt: skip
    out = {k: attrs.get(k) for k in keys}
    out["dir"] = str(Path(store_dir).resolve())
    out["counts"] = json.loads(attrs.get("counts", "{}"))
    return json.loads(json.dumps(out, default=lambda v: v.item() if hasattr(v, "item") else str(v)))
