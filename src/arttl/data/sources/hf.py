"""Hugging Face datasets: a hub id, a ``save_to_disk`` folder or Parquet files -> the source table.

``root`` is one of

- a hub id (``huggan/wikiart``): ``datasets.load_dataset(id)``, online, or offline from the
  ``datasets`` cache (``HF_HOME`` / ``HF_DATASETS_CACHE``) once it has been loaded there;
- a folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``
  (``datasets.load_from_disk``);
- a Parquet file, a folder of ``.parquet`` files (splits named by their file or folder names,
  as ``datasets`` infers them: ``train-00000-of-00001.parquet``, ``data/test/...``) or a glob
  of them (``load_dataset("parquet", data_files=...)``).

The label of an image is the column named by the challenge: ClassLabel names become class
names, strings stay as they are. The image column (``Image`` feature, or raw bytes) is
written, as the bytes the dataset stores, to one file per row,

    <cache_dir>/<dataset key>/<split>/<row>.<ext>

(``row``: the row's index in that split, ``ext`` from the bytes' signature), so that every
image goes through the same decoder as every other source and a broken one is rejected with
its reason. A file is only (re)written when its bytes differ, so re-preparing leaves the
files and their modification times alone and the store is reused.

The dataset's own splits are kept: ``train`` -> train, ``validation``/``valid``/``val``/
``dev`` -> val, ``test`` -> test. Only train: the store splits 80/10/10. Train and
validation: the store carves test out of train (``arttl.data.split``). Train and test
without validation: this reader moves ``val_fraction`` of each class's train rows to val
(``arttl.data.split`` carves a missing test split, not a missing val split).
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from arttl.data.sources._common import SPLITS, abspath, make_table
from arttl.errors import ConfigError, choice_error

log = logging.getLogger(__name__)

#: The default challenge (the usual label column of a hub dataset); any column name works.
CHALLENGES: tuple[str, ...] = ("label",)

#: A dataset's split names -> the store's splits (case-insensitive).
SPLIT_NAMES: dict[str, str] = {
    "train": "train",
    "training": "train",
    "validation": "val",
    "valid": "val",
    "val": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
}
INSTALL_HINT = "pip install 'arttl[hf]'"
MARKER = ".arttl-hf.json"  #: per split folder: the dataset fingerprint its files were written from
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
_GLOB_CHARS = ("*", "?", "[")
_ROW_FILE = re.compile(r"^\d+\.[A-Za-z0-9]+$")
_TMP_FILE = re.compile(r"^\.\d+\.[A-Za-z0-9]+\.tmp-(\d+)$")
_BATCH = 256

# (signature check, extension) for the formats a dataset usually stores
_SIGNATURES: tuple[tuple[Callable[[bytes], bool], str], ...] = (
    (lambda b: b[:3] == b"\xff\xd8\xff", ".jpg"),
    (lambda b: b[:8] == b"\x89PNG\r\n\x1a\n", ".png"),
    (lambda b: b[:6] in (b"GIF87a", b"GIF89a"), ".gif"),
    (lambda b: b[:4] == b"RIFF" and b[8:12] == b"WEBP", ".webp"),
    (lambda b: b[:4] in (b"II*\x00", b"MM\x00*"), ".tif"),
    (lambda b: b[:2] == b"BM", ".bmp"),
    (lambda b: b[4:12] in (b"ftypavif", b"ftypavis"), ".avif"),
    (lambda b: b[4:8] == b"ftyp" and b[8:12] in (b"heic", b"heix", b"mif1"), ".heic"),
    (lambda b: b[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n", ".jp2"),
)


def read_hf(
    root: str | os.PathLike[str],
    challenge: str = "label",
    image_column: str = "image",
    split: str | Sequence[str] | Mapping[str, str] | None = None,
    group_column: str | None = None,
    subset: str | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    drop: Iterable[str] = (),
    val_fraction: float = 0.1,
    seed: int = 42,
) -> pd.DataFrame:
    """Read a Hugging Face dataset: label column ``challenge``, images from ``image_column``.

    ``split``: None (every split of the dataset), a split name or a list of them, or a
    mapping ``{dataset split: train|val|test}`` for other names. ``group_column``: a column
    naming each image's group (e.g. the artist) for ``store.split_by=group``. ``subset`` and
    ``revision``: the hub dataset's configuration name and git revision. ``cache_dir``:
    where images are written (default ``$ARTTL_ROOT/data/cache/hf``, the launch folder
    when unset). ``drop``: label or group values that mean "unknown" (rows with such a label
    are left out; such a group becomes None). ``val_fraction`` / ``seed``: the share of each
    class's train rows moved to val when the dataset has train and test but no validation.

    ``df.attrs``: ``unmatched`` (rows without a label, without an image), ``hf`` (what was
    read: kind, dataset splits and their sizes, fingerprints, the cache folder).
    """
    kind, location = _locate(root)
    datasets = _import_datasets()
    _check_val_fraction(val_fraction)
    loaded = _load(datasets, kind, location, str(root), subset, revision)
    chosen = _choose_splits(loaded, split, str(root))
    for _, _, ds in chosen:
        _check_columns(datasets, ds, challenge, image_column, group_column, str(root))

    cache = Path(cache_dir).expanduser() if cache_dir is not None else _default_cache_dir()
    folder = cache / _dataset_key(kind, location, subset, revision)
    drop = frozenset(str(d) for d in drop)
    columns = _Columns(challenge, image_column, group_column, drop)
    rows = _read_splits(datasets, chosen, folder, columns)
    paths, counts = rows["paths"], rows["counts"]
    if not paths:
        raise ConfigError(
            f"dataset.root={str(root)!r}: no row has both an image in column {image_column!r} "
            f"and a label in column {challenge!r} (not used: {dict(counts)})"
        )
    store_splits = _store_splits(
        rows["splits"], rows["labels"], paths, val_fraction, seed, str(root)
    )
    if any(counts.values()):
        log.info("hf %s: %d rows; not used: %s", root, len(paths), dict(counts))
    return make_table(
        paths,
        rows["labels"],
        groups=rows["groups"] if group_column else None,
        splits=store_splits,
        attrs=_table_attrs(kind, str(root), chosen, rows, folder),
    )


def _check_val_fraction(val_fraction: object) -> None:
    """``dataset.reader.val_fraction`` is a number strictly between 0 and 1."""
    if not isinstance(val_fraction, int | float) or not 0.0 < float(val_fraction) < 1.0:
        raise ConfigError(
            f"dataset.reader.val_fraction={val_fraction!r} must be a number between 0 and 1"
        )


@dataclass(frozen=True)
class _Columns:
    """Which columns of a dataset split hold the label, the image and the group; labels dropped."""

    challenge: str
    image: str
    group: str | None
    drop: frozenset[str]


def _read_splits(
    datasets: Any, chosen: list[tuple[str, str, Any]], folder: Path, columns: _Columns
) -> dict[str, Any]:
    """Every chosen split's rows, in order: paths, labels, groups, store splits, the counts of
    rows not used, and each dataset split's fingerprint."""
    out: dict[str, Any] = {key: [] for key in ("paths", "labels", "groups", "splits")}
    out.update(counts=Counter(), fingerprints={})
    for name, store_split, ds in chosen:
        out["fingerprints"][name] = getattr(ds, "_fingerprint", None)
        rows = _materialise(datasets, ds, folder / _safe(name), columns)
        out["counts"].update(rows["counts"])
        out["paths"] += rows["paths"]
        out["labels"] += rows["labels"]
        out["groups"] += rows["groups"]
        out["splits"] += [store_split] * len(rows["paths"])
    return out


def _table_attrs(
    kind: str, root: str, chosen: list[tuple[str, str, Any]], rows: dict[str, Any], folder: Path
) -> dict[str, Any]:
    """``df.attrs`` of the table: the rows not used, and what was read from where."""
    counts = rows["counts"]
    return {
        "unmatched": {
            "missing_label": counts["missing_label"],
            "rows_without_image": counts["rows_without_image"],
        },
        "hf": {
            "kind": kind,
            "root": root,
            "splits": {name: len(ds) for name, _, ds in chosen},
            "store_splits": {name: s for name, s, _ in chosen},
            "fingerprints": rows["fingerprints"],
            "cache": str(folder),
        },
    }


def is_hub_id(root: str | os.PathLike[str]) -> bool:
    """True for ``name`` or ``namespace/name`` that is not a local path (nothing on disk there)."""
    text = os.fspath(root)
    if Path(text).expanduser().exists() or any(c in text for c in _GLOB_CHARS):
        return False
    return bool(_HUB_ID.match(text)) and not text.startswith((".", "~"))


def non_path_root(root: str | os.PathLike[str]) -> bool:
    """True when ``root`` is meant for this reader but is no path on disk (a hub id or a glob):
    a caller checking that ``dataset.root`` exists must let such a root through."""
    text = os.fspath(root)
    return is_hub_id(text) or (
        any(c in text for c in _GLOB_CHARS) and not Path(text).expanduser().exists()
    )


# Callers that check dataset.root on disk (build.prepare_dataset) can ask the reader first.
read_hf.non_path_root = non_path_root  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- where and what


def _locate(root: str | os.PathLike[str]) -> tuple[str, Any]:
    """("hub", id) | ("disk", folder) | ("parquet", folder or [files]) without importing datasets."""
    text = os.fspath(root)
    if text in ("", "???"):
        raise ConfigError(
            "root is not set; set dataset.root to a hub id (e.g. huggan/wikiart), a "
            "save_to_disk folder or Parquet files"
        )
    path = Path(text).expanduser()
    if path.is_dir():
        if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
            return "disk", path
        if any(path.rglob("*.parquet")):
            return "parquet", path
        raise ConfigError(
            f"root={text!r} is a folder but neither a datasets save_to_disk folder (no "
            "dataset_dict.json or state.json) nor a folder of .parquet files; for a folder of "
            "images use dataset=imagefolder, for a table of paths dataset=csv"
        )
    if path.is_file():
        return "parquet", [path]
    if any(c in text for c in _GLOB_CHARS):
        files = sorted(Path(p) for p in glob.glob(os.path.expanduser(text), recursive=True))
        files = [p for p in files if p.is_file()]
        if not files:
            raise ConfigError(f"root={text!r} is a glob that matches no file; fix dataset.root")
        return "parquet", files
    if is_hub_id(text):
        return "hub", text
    raise ConfigError(
        f"root={text!r} does not exist; set root to a hub id (namespace/name), a "
        "save_to_disk folder, a Parquet file or folder, or a glob of Parquet files"
    )


def _import_datasets() -> Any:
    try:
        import datasets
    except ImportError as err:
        raise ConfigError(
            f"dataset=hf needs the Hugging Face `datasets` package, which is not installed "
            f"({err}); install it with `{INSTALL_HINT}`"
        ) from None
    return datasets


def _load(
    datasets: Any, kind: str, location: Any, root: str, subset: str | None, revision: str | None
) -> dict[str, Any]:
    """Source split name -> Dataset, whatever the kind of root."""
    if kind == "disk":
        try:
            loaded = datasets.load_from_disk(str(location))
        except (FileNotFoundError, ValueError, OSError) as err:
            raise ConfigError(
                f"root={root!r}: cannot load the save_to_disk folder: {err}"
            ) from None
        if isinstance(loaded, datasets.Dataset):
            return {str(loaded.split) if loaded.split else "train": loaded}
        return dict(loaded)
    if kind == "parquet":
        return _load_parquet(datasets, location, root)
    return _load_hub(datasets, location, subset, revision)


def _load_parquet(datasets: Any, location: Path | list[Path], root: str) -> dict[str, Any]:
    import pyarrow.parquet as pq

    files = sorted(location.rglob("*.parquet")) if isinstance(location, Path) else location
    for file in files:
        try:
            pq.read_metadata(file)
        except Exception as err:  # pyarrow raises ArrowInvalid, OSError, ... for non-Parquet
            raise ConfigError(
                f"root={root!r}: {str(file)!r} is not a Parquet file ({type(err).__name__}: "
                f"{err}); give a save_to_disk folder, .parquet files or a hub id"
            ) from None
    if isinstance(location, Path):
        kwargs: dict[str, Any] = {"data_dir": str(location)}
    else:
        by_split = {f: _split_of_file(f) for f in files}
        if len(files) > 1 and all(by_split.values()):
            grouped: dict[str, list[str]] = {}
            for f, s in by_split.items():
                grouped.setdefault(str(s), []).append(str(f))
            kwargs = {"data_files": grouped}
        else:
            kwargs = {"data_files": [str(f) for f in files]}
    try:
        return dict(datasets.load_dataset("parquet", **kwargs))
    except Exception as err:
        raise ConfigError(
            f"root={root!r}: cannot read the Parquet files as one dataset "
            f"({type(err).__name__}: {err})"
        ) from None


def _split_of_file(path: Path) -> str | None:
    """The dataset split a file name (or its folder) names: train-0000.parquet, test/x.parquet."""
    for part in (path.stem, path.parent.name):
        for token in re.split(r"[-._ 0-9]+", part.lower()):
            if token in SPLIT_NAMES:
                return token
    return None


def _load_hub(
    datasets: Any, hub_id: str, subset: str | None, revision: str | None
) -> dict[str, Any]:
    from datasets.exceptions import DatasetNotFoundError

    offline = bool(getattr(datasets.config, "HF_HUB_OFFLINE", False))
    try:
        loaded = datasets.load_dataset(hub_id, name=subset, revision=revision)
    except DatasetNotFoundError as err:
        raise ConfigError(
            f"dataset.root={hub_id!r} is not a dataset on the Hugging Face Hub, or it is "
            f"private or gated and needs a token (`hf auth login` or HF_TOKEN) ({err}). For a "
            "local dataset give the save_to_disk folder or the Parquet files as dataset.root"
        ) from None
    except ConnectionError as err:
        why = "offline mode is on (HF_HUB_OFFLINE=1)" if offline else "the Hub cannot be reached"
        raise ConfigError(
            f"dataset.root={hub_id!r}: {why} and the dataset is not in the local datasets "
            f"cache ({datasets.config.HF_DATASETS_CACHE}) ({err}). Load it once online (this "
            "command, with network), or copy a save_to_disk folder or its Parquet files here "
            "and set dataset.root to them"
        ) from None
    except FileNotFoundError as err:
        raise ConfigError(
            f"dataset.root={hub_id!r} is neither a local path nor a dataset found on the Hub "
            f"({err})"
        ) from None
    except ValueError as err:  # e.g. an unknown subset ("BuilderConfig 'x' not found")
        raise ConfigError(
            f"dataset.root={hub_id!r} (dataset.reader.subset={subset!r}, "
            f"revision={revision!r}): {err}"
        ) from None
    if isinstance(loaded, datasets.Dataset):
        return {str(loaded.split) if loaded.split else "train": loaded}
    return dict(loaded)


def _choose_splits(
    loaded: dict[str, Any], split: str | Sequence[str] | Mapping[str, str] | None, root: str
) -> list[tuple[str, str, Any]]:
    """[(dataset split, store split, Dataset)] for the splits asked for (all by default)."""
    available = list(loaded)
    if split is None:
        wanted = {name: SPLIT_NAMES.get(name.lower()) for name in available}
        key = "dataset.reader.split"
    elif isinstance(split, str):
        wanted = {split: SPLIT_NAMES.get(split.lower())}
        key = f"dataset.reader.split={split!r}"
    elif isinstance(split, Mapping):
        wanted = {str(k): str(v) for k, v in split.items()}
        key = f"dataset.reader.split={dict(wanted)}"
        for name, target in wanted.items():
            if target not in SPLITS:
                raise ConfigError(
                    f"{key}: {name!r} maps to {target!r}, which is not one of the store's "
                    f"splits {', '.join(SPLITS)}"
                )
    else:
        wanted = {str(s): SPLIT_NAMES.get(str(s).lower()) for s in split}
        key = f"dataset.reader.split={list(wanted)}"
    missing = [name for name in wanted if name not in loaded]
    if missing:
        raise choice_error(
            "dataset.reader.split", missing[0], available,
            hint=f"Those are the splits of dataset.root={root!r} ({key})",
        )  # fmt: skip
    if not wanted:
        raise ConfigError(f"{key} selects no split; dataset.root={root!r} has: {available}")
    chosen: list[tuple[str, str, Any]] = []
    for name, target in wanted.items():
        if target is None and len(wanted) > 1:
            raise ConfigError(
                f"dataset.root={root!r} has a split {name!r} that is not train, validation or "
                f"test (its splits: {', '.join(available)}). Choose splits with "
                "dataset.reader.split=[train,test], or map each to a store split, e.g. "
                f"dataset.reader.split='{{{name}: train}}'"
            )
        chosen.append((name, target or "train", loaded[name]))
    return chosen


def _feature_name(feature: Any) -> str:
    return type(feature).__name__ + (f"({feature.dtype})" if hasattr(feature, "dtype") else "")


def _check_columns(
    datasets: Any,
    ds: Any,
    challenge: str,
    image_column: str,
    group_column: str | None,
    root: str,
) -> None:
    columns = list(ds.column_names)
    features = ds.features
    images = [c for c in columns if isinstance(features[c], datasets.Image)]
    if image_column not in columns:
        raise choice_error(
            "dataset.reader.image_column", image_column, columns,
            hint=f"Those are the columns of dataset.root={root!r}"
            + (f"; its image columns: {', '.join(images)}" if images else ""),
        )  # fmt: skip
    feature = features[image_column]
    if not (
        isinstance(feature, datasets.Image)
        or (isinstance(feature, datasets.Value) and feature.dtype in ("binary", "large_binary"))
    ):
        raise ConfigError(
            f"dataset.reader.image_column={image_column!r} holds {_feature_name(feature)}, "
            f"not images; image columns of dataset.root={root!r}: {', '.join(images) or 'none'}"
        )
    for key, column in (("challenge", challenge), ("dataset.reader.group_column", group_column)):
        if column is None:
            continue
        if column not in columns:
            raise choice_error(
                key, column, [c for c in columns if c != image_column],
                hint=f"Those are the label columns of dataset.root={root!r}",
            )  # fmt: skip
        if not isinstance(features[column], datasets.ClassLabel | datasets.Value):
            raise ConfigError(
                f"{key}={column!r} holds {_feature_name(features[column])} (a list or nested "
                "value); one label per image is needed: a ClassLabel, string or number column"
            )


# --------------------------------------------------------------------------- rows -> files


def _converter(datasets: Any, feature: Any, drop: frozenset[str]) -> Callable[[Any], str | None]:
    """Raw column value -> label text (None: no label)."""
    if isinstance(feature, datasets.ClassLabel):
        names = list(feature.names)

        def from_class(value: Any) -> str | None:
            if value is None or not 0 <= int(value) < len(names):
                return None  # -1: "no label" in datasets
            name = names[int(value)]
            return None if name in drop else name

        return from_class

    def from_value(value: Any) -> str | None:
        if value is None:
            return None
        text = value if isinstance(value, str) else str(value)
        return None if not text.strip() or text in drop else text

    return from_value


def _materialise(datasets: Any, ds: Any, folder: Path, cols: _Columns) -> dict[str, Any]:
    """Write each row's image bytes to ``folder/<row>.<ext>`` (only when changed); the rows."""
    challenge, image_column, group_column, drop = cols.challenge, cols.image, cols.group, cols.drop
    if isinstance(ds.features[image_column], datasets.Image):
        ds = ds.cast_column(image_column, datasets.Image(decode=False))
    label_of = _converter(datasets, ds.features[challenge], drop)
    group_of = _converter(datasets, ds.features[group_column], drop) if group_column else None
    columns = list(dict.fromkeys(c for c in (image_column, challenge, group_column) if c))
    folder.mkdir(parents=True, exist_ok=True)
    fingerprint = getattr(ds, "_fingerprint", None)
    marker = folder / MARKER
    trusted = fingerprint is not None and _read_marker(marker).get("fingerprint") == fingerprint
    out: dict[str, Any] = {"paths": [], "labels": [], "groups": [], "counts": Counter()}
    written: set[str] = set()
    index = 0
    for batch in ds.select_columns(columns).iter(batch_size=_BATCH):
        groups = batch[group_column] if group_column else [None] * len(batch[image_column])
        for value, raw_label, raw_group in zip(
            batch[image_column], batch[challenge], groups, strict=True
        ):
            row, index = index, index + 1
            label = label_of(raw_label)
            if label is None:
                out["counts"]["missing_label"] += 1
                continue
            data, source = _image_bytes(value)
            if data is None:
                if source is None:
                    out["counts"]["rows_without_image"] += 1
                    continue
                path = source  # the dataset points at a file on this machine: use it as is
            else:
                name = f"{row:06d}{_extension(data, value)}"
                path = folder / name
                _write_if_changed(path, data, trusted)
                written.add(name)
            out["paths"].append(abspath(path))
            out["labels"].append(label)
            out["groups"].append(group_of(raw_group) if group_of else None)
    _remove_stale(folder, written)
    if fingerprint is not None and not trusted:
        _write_marker(marker, {"fingerprint": fingerprint, "rows": len(ds)})
    return out


def _image_bytes(value: Any) -> tuple[bytes | None, Path | None]:
    """(encoded bytes, None) or (None, a local file the dataset names) or (None, None)."""
    if isinstance(value, dict):
        data, src = value.get("bytes"), value.get("path")
        if data:
            return bytes(data), None
        if src and os.path.isabs(src) and os.path.isfile(src):
            return None, Path(src)
        if data is not None:  # b"": an empty image, rejected by the decoder with its reason
            return b"", None
        return None, None
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value), None
    return None, None


def _extension(data: bytes, value: Any) -> str:
    for matches, ext in _SIGNATURES:
        if matches(data):
            return ext
    src = value.get("path") if isinstance(value, dict) else None
    suffix = os.path.splitext(str(src or ""))[1].lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) else ".bin"


def _write_if_changed(path: Path, data: bytes, trusted: bool) -> None:
    """Write ``data`` to ``path`` atomically unless the file already holds exactly these bytes.

    ``trusted``: the folder was written from the same dataset fingerprint, so a file of the
    right size is taken as unchanged without reading it.
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        size = -1
    if size == len(data) and (trusted or path.read_bytes() == data):
        return
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _remove_stale(folder: Path, keep: set[str]) -> None:
    """Remove row files of this split that the dataset no longer has (and dead writers' temps)."""
    with os.scandir(folder) as entries:
        names = [e.name for e in entries if e.is_file()]
    for name in names:
        tmp = _TMP_FILE.match(name)
        stale = (_ROW_FILE.match(name) and name not in keep) or (
            tmp and not _pid_alive(int(tmp.group(1)))
        )
        if stale:
            (folder / name).unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_marker(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _write_marker(path: Path, obj: dict[str, Any]) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _default_cache_dir() -> Path:
    return Path(os.environ.get("ARTTL_ROOT") or os.getcwd()) / "data" / "cache" / "hf"


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._@-]+", "_", text).strip("._") or "_"


def _dataset_key(kind: str, location: Any, subset: str | None, revision: str | None) -> str:
    """The cache folder name of a dataset: readable, and distinct for distinct sources."""
    if kind == "hub":
        key = str(location).replace("/", "--")
        key += f"--{subset}" if subset else ""
        key += f"@{revision}" if revision else ""
        return _safe(key)
    if isinstance(location, list):  # files or a glob: named by the folder of the first file
        ident = "\n".join(abspath(p) for p in location)
        name = Path(location[0]).parent.name + "-files"
    else:
        ident = abspath(location)
        name = Path(ident).name
    return f"{_safe(name)}-{hashlib.sha256(ident.encode()).hexdigest()[:8]}"


# --------------------------------------------------------------------------- splits


def _store_splits(
    splits: list[str | None],
    labels: list[str],
    paths: list[str],
    val_fraction: float,
    seed: int,
    root: str,
) -> list[str | None]:
    """The split column: kept as given, None when only one split was read, val carved from
    train when the dataset gives train and test but no validation."""
    present = set(splits)
    if len(present) <= 1:
        return [None] * len(splits)  # one split: the store splits it 80/10/10
    if "train" not in present:
        raise ConfigError(
            f"dataset.root={root!r}: the splits read ({', '.join(sorted(map(str, present)))}) "
            "have no train split; choose one split (the store splits it) or map one to train "
            "with dataset.reader.split='{<name>: train, ...}'"
        )
    if "val" in present:
        return list(splits)  # train+val(+test): a missing test split is carved by the store
    return _carve_val(splits, labels, paths, val_fraction, seed)


def _carve_val(
    splits: list[str | None], labels: list[str], paths: list[str], fraction: float, seed: int
) -> list[str | None]:
    """Move ``fraction`` of each class's train rows (at least one, when it has two) to val.

    Seeded per class as ``arttl.data.split`` does, and independent of row order.
    """
    out = list(splits)
    by_label: dict[str, list[int]] = {}
    for i, (s, lab) in enumerate(zip(splits, labels, strict=True)):
        if s == "train":
            by_label.setdefault(lab, []).append(i)
    for label, rows in sorted(by_label.items()):
        rows.sort(key=paths.__getitem__)
        n_val = max(1, round(len(rows) * fraction)) if len(rows) > 1 else 0
        digest = hashlib.sha256(f"{seed}:val:{label}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        for k in rng.permutation(len(rows))[:n_val]:
            out[rows[int(k)]] = "val"
    log.info(
        "hf: the dataset has train and test but no validation split; %d train rows moved to val",
        sum(s == "val" for s in out),
    )
    return out
