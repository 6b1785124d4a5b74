"""Seeded, stratified train/val/test splits that keep only classes present in every split."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from arttl.data.store import SPLITS
from arttl.errors import ConfigError


def _class_rng(seed: int, label: str) -> np.random.Generator:
    # One generator per class, keyed by its name: adding a class never reshuffles the others.
    digest = hashlib.sha256(f"{seed}:{label}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _counts(n: int, fractions: tuple[float, float, float], min_per_split: int) -> tuple[int, int]:
    n_val = max(min_per_split, round(n * fractions[1]))
    n_test = max(min_per_split, round(n * fractions[2]))
    return n_val, n_test


def assign_splits(
    table: pd.DataFrame,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 42,
    min_per_split: int = 1,
) -> pd.DataFrame:
    """Add a ``split`` column (stratified by label) and drop classes too small for every split.

    Rows the source already assigned (``split`` not null) keep their split; a source that gives
    only train/val (the ArtGAN lists) has its test split carved out of its train rows.
    The result depends only on the rows (sorted by path) and the seed, not on input order.
    """
    if not np.isclose(sum(fractions), 1.0) or min(fractions) < 0:
        raise ConfigError(
            f"store.fractions={list(fractions)} must be 3 non-negative numbers summing to 1."
        )
    df = table.sort_values("path", kind="stable").reset_index(drop=True)
    given = df["split"] if "split" in df else pd.Series([None] * len(df))
    given = given.where(given.notna(), None)
    out = pd.Series([None] * len(df), dtype=object)
    has_given = given.notna().any()
    for label, idx in df.groupby("label", sort=True).groups.items():
        idx = np.asarray(sorted(idx))
        rng = _class_rng(seed, str(label))
        if has_given:
            out[idx] = given[idx].to_numpy()
            if "test" not in set(given.dropna()):
                train_idx = idx[given[idx].to_numpy() == "train"]
                share = fractions[2] / (fractions[0] + fractions[2])
                n_test = max(min_per_split, round(len(train_idx) * share))
                chosen = rng.permutation(train_idx)[:n_test]
                out[chosen] = "test"
            continue
        perm = rng.permutation(idx)
        n_val, n_test = _counts(len(idx), fractions, min_per_split)
        out[perm[:n_test]] = "test"
        out[perm[n_test : n_test + n_val]] = "val"
        out[perm[n_test + n_val :]] = "train"
    df["split"] = out
    df = df[df["split"].notna()]
    counts = (
        df.groupby(["label", "split"])
        .size()
        .unstack(fill_value=0)
        .reindex(columns=list(SPLITS), fill_value=0)
    )
    keep = counts.index[(counts >= min_per_split).all(axis=1)]
    dropped = sorted(set(counts.index) - set(keep))
    result = df[df["label"].isin(keep)].reset_index(drop=True)
    result.attrs["dropped_classes"] = dropped
    return result
