"""Dataset source readers: raw files of one dataset family -> one table (path, label, group, split).

``get_reader(name)`` is the one place where a dataset name from a config becomes code, so
an unknown name fails here with the list of valid names instead of deep inside prepare.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from types import ModuleType

import pandas as pd

from arttl.data.sources import (
    antwerp,
    csvtable,
    hf,
    imagefolder,
    pandora18k,
    rijksmuseum,
    wikiart,
)
from arttl.errors import choice_error

__all__ = ["READERS", "SOURCES", "get_challenges", "get_reader", "read_source"]

#: Dataset family name -> its module (each has ``CHALLENGES`` and one ``read_*`` function).
SOURCES: dict[str, ModuleType] = {
    "rijksmuseum": rijksmuseum,
    "antwerp": antwerp,
    "pandora18k": pandora18k,
    "wikiart": wikiart,
    "imagefolder": imagefolder,
    "csv": csvtable,
    "hf": hf,
}

READERS: dict[str, Callable[..., pd.DataFrame]] = {
    "rijksmuseum": rijksmuseum.read_rijksmuseum,
    "antwerp": antwerp.read_antwerp,
    "pandora18k": pandora18k.read_pandora18k,
    "wikiart": wikiart.read_wikiart,
    "imagefolder": imagefolder.read_imagefolder,
    "csv": csvtable.read_csv_table,
    "hf": hf.read_hf,
}


def get_reader(name: str) -> Callable[..., pd.DataFrame]:
    """The ``read_*`` function of dataset family ``name``; ConfigError listing names if unknown."""
    if name not in READERS:
        raise choice_error("dataset", name, READERS)
    return READERS[name]


def get_challenges(name: str) -> tuple[str, ...]:
    """The challenges dataset family ``name`` offers by default (``module.CHALLENGES``)."""
    if name not in SOURCES:
        raise choice_error("dataset", name, SOURCES)
    return tuple(SOURCES[name].CHALLENGES)


def read_source(
    name: str, root: str | os.PathLike[str], challenge: str, **options: object
) -> pd.DataFrame:
    """Call the reader of ``name``; an option it does not take is a ConfigError naming the
    options it does take (a typo in a config must not surface as a TypeError)."""
    reader = get_reader(name)
    params = inspect.signature(reader).parameters
    accepted = [p for p in params if p not in ("root", "challenge")]
    for key in options:
        if key not in accepted:
            raise choice_error(f"dataset option ({name})", key, accepted)
    return reader(root, challenge, **options)
