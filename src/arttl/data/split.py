"""Seeded, stratified train/val/test splits that keep only classes present in every split.

Two ways to stratify (``split_by``):

- ``"label"`` (the paper's default): every class is shuffled with its own seeded generator
  and cut into train/val/test by row counts.
- ``"group"``: a stratified *group* split. Every image of one ``group`` (an artist, a
  Pandora18k artist folder) lands in exactly one split, so a model is never tested on a
  painter it was trained on; per-class proportions are kept as close to ``fractions`` as
  the groups allow.

In both modes rows that share a ``dup_key`` (a content hash of the decoded pixels: the same
image under two names) are never separated: a duplicate in train and test would inflate
the test score.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from arttl.config_schema import SPLIT_BY, check_fractions
from arttl.data.store import SPLITS
from arttl.errors import ConfigError, choice_error

log = logging.getLogger(__name__)

_NO_GROUP_HINT = (
    "Give every image a group (e.g. its artist): for dataset=imagefolder set "
    "dataset.reader.group_regex='^[^/]+/([^_]+)_' (a regex on the '<class>/<file>' path "
    "relative to root; its first capture group is the group; a nested "
    "'<class>/<subfolder>/<image>' tree groups by subfolder without it), for dataset=csv set "
    "dataset.reader.group_column=<column>; or use store.split_by=label"
)


def _class_rng(seed: int, label: str) -> np.random.Generator:
    # One generator per class, keyed by its name: adding a class never reshuffles the others.
    digest = hashlib.sha256(f"{seed}:{label}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _counts(n: int, fractions: tuple[float, float, float], min_per_split: int) -> tuple[int, int]:
    n_val = max(min_per_split, round(n * fractions[1]))
    n_test = max(min_per_split, round(n * fractions[2]))
    return n_val, n_test


def _keys(df: pd.DataFrame, column: str) -> list[str | None]:
    """The column as stripped strings, None where missing or empty (such a row is alone)."""
    if column not in df:
        return [None] * len(df)
    out: list[str | None] = []
    for value in df[column].tolist():
        if value is None or (not isinstance(value, str) and bool(pd.isna(value))):
            out.append(None)
        else:
            text = str(value).strip()
            out.append(text or None)
    return out


def _components(*keys: Sequence[str | None]) -> np.ndarray:
    """Unit id per row: rows sharing a non-missing value in any key column are one unit.

    Ids are numbered by each unit's first row, so they depend only on the (sorted) rows.
    """
    n = len(keys[0]) if keys else 0
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for key in keys:
        first: dict[str, int] = {}
        for i, value in enumerate(key):
            if value is None:
                continue
            j = first.setdefault(value, i)
            if j != i:
                ri, rj = find(i), find(j)
                if ri != rj:
                    parent[max(ri, rj)] = min(ri, rj)  # the root is the unit's first row
    roots = np.fromiter((find(i) for i in range(n)), dtype=np.int64, count=n)
    codes, _ = pd.factorize(roots)
    return codes.astype(np.int64)


def _cluster_stats(key: Sequence[str | None]) -> tuple[int, int]:
    """(clusters with more than one row, rows in them) of a key column."""
    sizes = pd.Series([k for k in key if k is not None], dtype=object).value_counts()
    multi = sizes[sizes > 1]
    return len(multi), int(multi.sum())


def _across(key: Sequence[str | None], given: Sequence[str | None]) -> int:
    """How many key values (with >1 row) carry more than one pre-assigned split."""
    seen: dict[str, set[str]] = {}
    for k, s in zip(key, given, strict=True):
        if k is not None and s is not None:
            seen.setdefault(k, set()).add(s)
    return sum(len(v) > 1 for v in seen.values())


def _majority_label(labels: np.ndarray, unit: np.ndarray) -> pd.Series:
    """Each unit's most frequent label (ties: the smallest name), indexed by unit id."""
    counts = pd.DataFrame({"unit": unit, "label": labels}).value_counts().reset_index(name="n")
    counts = counts.sort_values(["unit", "n", "label"], ascending=[True, False, True])
    return counts.drop_duplicates("unit").set_index("unit")["label"]


def _by_label(
    labels: np.ndarray,
    unit: np.ndarray,
    rows: np.ndarray,
    seed: int,
    plan: Callable[[int], list[tuple[str, int]]],
    rest: str,
) -> dict[int, str]:
    """Per class: shuffle its units with the class generator and fill the splits of ``plan``.

    A unit (a cluster of duplicates, usually one row) belongs to the class most of its rows
    have. In shuffled order a unit goes to the first split of ``plan(n_rows)`` whose quota is
    not yet filled by the units before it; the rest go to ``rest``. With one-row units this
    is exactly ``permutation[:n_test]`` -> test, the next ``n_val`` -> val (the old code).
    """
    sub_unit = unit[rows]
    owner = _majority_label(labels[rows], sub_unit)
    first_row: dict[int, int] = {}
    members: dict[int, list[int]] = {}
    for r, u in zip(rows.tolist(), sub_unit.tolist(), strict=True):
        first_row.setdefault(u, r)
        members.setdefault(u, []).append(r)
    out: dict[int, str] = {}
    for label, units in owner.groupby(owner, sort=True).groups.items():
        units = sorted(units, key=first_row.__getitem__)
        rng = _class_rng(seed, str(label))
        # permutation(n) shuffles like permutation(rows) did: same generator use as before
        order_units = [units[i] for i in rng.permutation(len(units))]
        sizes = np.asarray([len(members[u]) for u in order_units])
        n = int(sizes.sum())
        start = np.cumsum(sizes) - sizes
        bounds = np.cumsum([count for _, count in plan(n)])
        names = [name for name, _ in plan(n)] + [rest]
        for u, s in zip(order_units, start.tolist(), strict=True):
            split = names[int(np.searchsorted(bounds, s, side="right"))]
            for r in members[u]:
                out[r] = split
    return out


def cap_per_class(table: pd.DataFrame, max_per_class: int | None, seed: int) -> pd.DataFrame:
    """At most ``max_per_class`` rows per label, sorted by path; None keeps every row.

    Which rows stay is a seeded hash of each path, so adding images to a class swaps few of the
    chosen ones, and the same seed and files always give the same subset.
    ``result.attrs["capped_rows"]``: rows left out.
    """
    df = table.sort_values("path", kind="stable").reset_index(drop=True)
    if max_per_class is None:
        df.attrs["capped_rows"] = 0
        return df
    rank = df["path"].map(
        lambda p: hashlib.sha256(f"{seed}:cap:{p}".encode()).hexdigest()
    )  # fmt: skip
    keep = rank.groupby(df["label"]).rank(method="first") <= max_per_class
    out = df[keep].reset_index(drop=True)
    out.attrs = {**table.attrs, "capped_rows": int((~keep).sum())}
    return out


def _unit_key(seed: int, path: str) -> int:
    # A unit's tie-break rank, keyed by its first path: adding a group never reorders the others.
    return int.from_bytes(hashlib.sha256(f"{seed}:group:{path}".encode()).digest()[:8], "little")


# Stratified group split written by hand (StratifiedGroupKFold's idea): no scikit-learn.
class _GroupPlacer:
    """Units (groups) placed greedily where they bring the per-class split proportions closest
    to ``fractions`` (squared error of per-class proportions); see :func:`_by_group`."""

    def __init__(
        self, labels: np.ndarray, inverse: np.ndarray, first_path: np.ndarray, seed: int,
        fractions: tuple[float, ...],
    ) -> None:  # fmt: skip
        n_units = int(inverse.max()) + 1 if len(inverse) else 0
        self.classes, label_code = np.unique(labels, return_inverse=True)
        # unit x class counts, stored sparsely as CSR (a unit holds only a few classes)
        pair = pd.DataFrame({"u": inverse, "c": label_code}).value_counts().sort_index()
        self.ent_u = pair.index.get_level_values("u").to_numpy()
        self.ent_c = pair.index.get_level_values("c").to_numpy()
        self.ent_n = pair.to_numpy().astype(float)
        self.ptr = np.searchsorted(self.ent_u, np.arange(n_units + 1))
        self.size = np.bincount(inverse, minlength=n_units)
        self.rank = np.asarray([_unit_key(seed, str(p)) for p in first_path], dtype=np.uint64)
        total = np.bincount(self.ent_c, weights=self.ent_n, minlength=len(self.classes))
        self.target = np.outer(np.asarray(fractions, dtype=float), total)  # split x class
        self.weight = 1.0 / np.maximum(total, 1.0) ** 2  # error in proportions, every class alike
        self.filled = np.zeros_like(self.target)
        self.where = np.full(n_units, -1, dtype=np.int64)

    def costs(self, u: int) -> np.ndarray:
        part = slice(self.ptr[u], self.ptr[u + 1])
        c, n = self.ent_c[part], self.ent_n[part]
        deficit = self.target[:, c] - self.filled[:, c]
        return (self.weight[c] * n * (n - 2.0 * deficit)).sum(axis=1)

    def place(self, u: int, s: int) -> None:
        self.where[u] = s
        part = slice(self.ptr[u], self.ptr[u + 1])
        self.filled[s, self.ent_c[part]] += self.ent_n[part]

    def seed_small_splits(self, n_splits: int, need: int) -> None:
        """For every class with enough units, a seeded unit that fits each small split's quota
        goes there first, so no class is dropped for lack of a val/test image."""
        small = list(range(n_splits - 1, 0, -1))  # test before val, as in label mode
        ents_of = [np.flatnonzero(self.ent_c == c) for c in range(len(self.classes))]
        order = sorted(
            range(len(self.classes)), key=lambda k: (len(ents_of[k]), str(self.classes[k]))
        )
        for c in order:
            if len(ents_of[c]) < n_splits:
                continue  # cannot reach every split: dropped later whatever we do
            for s in small:
                while self.filled[s, c] < need:
                    free = [e for e in ents_of[c].tolist() if self.where[self.ent_u[e]] < 0]
                    later = sum(self.filled[t, c] < need for t in range(n_splits) if t != s)
                    if len(free) <= later:
                        break
                    self.place(int(self.ent_u[min(free, key=self._pick_key(s, c))]), s)

    def _pick_key(self, s: int, c: int) -> Callable[[int], tuple[bool, float, int]]:
        # a seeded pick among the units that fit the quota (this is where the seed matters
        # most); only if none fits, the one that overshoots least
        room = self.target[s, c] - self.filled[s, c] + 1e-9

        def key(e: int) -> tuple[bool, float, int]:
            u = self.ent_u[e]
            over = bool(self.ent_n[e] > room)
            return over, float(self.costs(u)[s]) if over else 0.0, int(self.rank[u])

        return key

    def place_rest(self) -> None:
        """The other units, largest first (ties in a seeded order), each where it helps most."""
        for u in np.lexsort((self.rank, -self.size)).tolist():
            if self.where[u] < 0:
                self.place(u, int(np.argmin(self.costs(u))))


def _by_group(
    labels: np.ndarray,
    unit: np.ndarray,
    paths: np.ndarray,
    rows: np.ndarray,
    seed: int,
    names: tuple[str, ...],
    fractions: tuple[float, ...],
    min_per_split: int,
) -> dict[int, str]:
    """Stratified group split of ``rows`` into ``names`` (the first is the large one).

    Implemented by hand (no scikit-learn), after the idea of StratifiedGroupKFold: first, for
    every class with enough units, a seeded random unit that fits each small split's quota is
    put there, so that no class is dropped for lack of a val/test image and the seed varies the
    split; then the other units follow, largest first (ties in a seeded order), each to the
    split that lowers the error most.
    """
    sub_unit = unit[rows]
    uids, inverse = np.unique(sub_unit, return_inverse=True)
    first_path = pd.Series(paths[rows]).groupby(inverse).min().to_numpy()
    placer = _GroupPlacer(labels[rows], inverse, first_path, seed, fractions)
    need = max(int(min_per_split), 0)
    if need:
        placer.seed_small_splits(len(names), need)
    placer.place_rest()
    split_of_unit = dict(zip(uids.tolist(), (names[s] for s in placer.where.tolist()), strict=True))
    return {r: split_of_unit[u] for r, u in zip(rows.tolist(), sub_unit.tolist(), strict=True)}


def _check_groups(df: pd.DataFrame, groups: list[str | None]) -> None:
    if "group" not in df:
        raise ConfigError(
            "store.split_by='group' needs a 'group' column in the dataset table, but this "
            f"dataset has none (columns: {list(df.columns)}). {_NO_GROUP_HINT}."
        )
    if all(g is None for g in groups):
        raise ConfigError(
            "store.split_by='group' needs a group per image, but the dataset table's "
            f"'group' column is empty in all {len(df)} rows. {_NO_GROUP_HINT}."
        )


def _split_stats(
    df: pd.DataFrame,
    split_by: str,
    groups: list[str | None],
    dups: list[str | None],
    given: list[str | None],
) -> dict[str, object]:
    """The split's ``attrs`` (see :func:`assign_splits`), counted over the input rows."""
    has_given = any(g is not None for g in given)
    n_dup_groups, n_dup_rows = _cluster_stats(dups)
    attrs: dict[str, object] = {
        "split_by": split_by,
        "duplicate_groups": n_dup_groups,
        "duplicate_rows": n_dup_rows,
        "duplicates_across_given_splits": _across(dups, given) if has_given else 0,
        "mixed_label_groups": None,
        "ungrouped_rows": None,
        "groups_across_given_splits": None,
    }
    if split_by == "group":
        mix: dict[str, set[str]] = {}
        for g, lab in zip(groups, df["label"].astype(str).tolist(), strict=True):
            if g is not None:
                mix.setdefault(g, set()).add(lab)
        attrs["mixed_label_groups"] = sum(len(v) > 1 for v in mix.values())
        attrs["ungrouped_rows"] = sum(g is None for g in groups)
        attrs["groups_across_given_splits"] = _across(groups, given) if has_given else 0
    for key in ("duplicates_across_given_splits", "groups_across_given_splits"):
        if attrs[key]:
            log.warning("split: %s=%s (the source's own splits overlap)", key, attrs[key])
    return attrs


@dataclass(frozen=True)
class _Plan:
    """What every assignment needs: labels, units (rows that move together), paths, settings."""

    labels: np.ndarray
    unit: np.ndarray
    paths: np.ndarray
    seed: int
    fractions: tuple[float, float, float]
    min_per_split: int
    split_by: str


def _given_then_assigned(plan: _Plan, given: pd.Series) -> list[str | None]:
    """Rows the source assigned keep their split; a source with only train/val (the ArtGAN
    lists) has its test split carved out of its train rows."""
    out = given.tolist()
    if "test" in set(given.dropna()):
        return out
    rows = np.flatnonzero(given.to_numpy() == "train")
    share = plan.fractions[2] / (plan.fractions[0] + plan.fractions[2])
    if plan.split_by == "group":
        assigned = _by_group(
            plan.labels, plan.unit, plan.paths, rows, plan.seed,
            ("train", "test"), (1.0 - share, share), plan.min_per_split,
        )  # fmt: skip
    else:

        def test_only(n: int) -> list[tuple[str, int]]:
            return [("test", max(plan.min_per_split, round(n * share)))]

        assigned = _by_label(plan.labels, plan.unit, rows, plan.seed, test_only, "train")
    for r, split in assigned.items():
        out[r] = split
    return out


def _all_assigned(plan: _Plan) -> list[str | None]:
    out: list[str | None] = [None] * len(plan.labels)
    if not len(out):
        return out
    rows = np.arange(len(out))
    if plan.split_by == "group":
        assigned = _by_group(
            plan.labels, plan.unit, plan.paths, rows, plan.seed,
            ("train", "val", "test"), tuple(plan.fractions), plan.min_per_split,
        )  # fmt: skip
    else:

        def val_test(n: int) -> list[tuple[str, int]]:
            n_val, n_test = _counts(n, plan.fractions, plan.min_per_split)
            return [("test", n_test), ("val", n_val)]

        assigned = _by_label(plan.labels, plan.unit, rows, plan.seed, val_test, "train")
    for r, split in assigned.items():
        out[r] = split
    return out


def assign_splits(
    table: pd.DataFrame,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 42,
    min_per_split: int = 1,
    split_by: str = "label",
    keep_rare: bool = False,
) -> pd.DataFrame:
    """Add a ``split`` column (stratified by label) and drop classes too small for every split.

    Rows the source already assigned (``split`` not null) keep their split; a source that gives
    only train/val (the ArtGAN lists) has its test split carved out of its train rows.
    The result depends only on the rows (sorted by path) and the seed, not on input order.

    ``split_by="group"`` keeps every ``group`` (e.g. artist) in one split; a row without a
    group is a group of its own. Rows sharing a ``dup_key`` (optional column) always share a
    split. Without duplicates, ``split_by="label"`` gives exactly the paper-default split.

    ``result.attrs``: ``dropped_classes`` (classes not in every split), ``split_by``,
    ``duplicate_groups`` / ``duplicate_rows`` (dup_key clusters with more than one row and
    their rows), ``duplicates_across_given_splits`` (such clusters the source itself put in
    several splits: they cannot be moved); for ``split_by="group"`` also
    ``mixed_label_groups`` (groups with images of several classes, kept whole),
    ``ungrouped_rows`` (rows without a group) and ``groups_across_given_splits``; these three
    are None for ``split_by="label"``. Counts are over the input table. ``keep_rare=True`` keeps
    the rows of dropped classes (a multi-task store masks them per task instead).
    """
    check_fractions(fractions)
    if split_by not in SPLIT_BY:
        raise choice_error("store.split_by", split_by, SPLIT_BY)
    df = table.sort_values("path", kind="stable").reset_index(drop=True)
    groups = _keys(df, "group")
    if split_by == "group":
        _check_groups(df, groups)
    dups = _keys(df, "dup_key")
    given = df["split"] if "split" in df else pd.Series([None] * len(df))
    given = given.where(given.notna(), None)
    attrs = _split_stats(df, split_by, groups, dups, given.tolist())
    unit = _components(groups, dups) if split_by == "group" else _components(dups)
    plan = _Plan(
        df["label"].astype(str).to_numpy(), unit, df["path"].to_numpy(), seed, fractions,
        min_per_split, split_by,
    )  # fmt: skip
    values = _given_then_assigned(plan, given) if given.notna().any() else _all_assigned(plan)
    df["split"] = pd.Series(values, index=df.index, dtype=object)
    df = df[df["split"].notna()]
    counts = (
        df.groupby(["label", "split"])
        .size()
        .unstack(fill_value=0)
        .reindex(columns=list(SPLITS), fill_value=0)
    )
    keep = counts.index[(counts >= min_per_split).all(axis=1)]
    dropped = sorted(set(counts.index) - set(keep))
    result = (df if keep_rare else df[df["label"].isin(keep)]).reset_index(drop=True)
    result.attrs.update(attrs)
    result.attrs["dropped_classes"] = dropped
    return result
