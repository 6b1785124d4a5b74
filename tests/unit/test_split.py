import numpy as np
import pandas as pd
import pytest

from arttl.data.build import StoreSettings, settings_dict
from arttl.data.split import assign_splits, cap_per_class
from arttl.errors import ConfigError


def table(sizes: dict[str, int]) -> pd.DataFrame:
    rows = [(f"/img/{c}/{i:04d}.jpg", c) for c, n in sizes.items() for i in range(n)]
    return pd.DataFrame(rows, columns=["path", "label"])


def test_stratified_80_10_10_and_no_overlap():
    df = assign_splits(table({"a": 100, "b": 50, "c": 20}), seed=1)
    counts = df.groupby(["label", "split"]).size().unstack()
    assert counts.loc["a"].to_dict() == {"test": 10, "train": 80, "val": 10}
    assert counts.loc["b"].to_dict() == {"test": 5, "train": 40, "val": 5}
    assert counts.loc["c"].to_dict() == {"test": 2, "train": 16, "val": 2}
    assert df["path"].is_unique and len(df) == 170


def test_classes_missing_from_a_split_are_dropped():
    df = assign_splits(table({"a": 30, "b": 30, "tiny": 2}), min_per_split=1)
    assert set(df["label"]) == {"a", "b"}
    assert df.attrs["dropped_classes"] == ["tiny"]
    df = assign_splits(table({"a": 30, "b": 15}), min_per_split=2)
    assert set(df["label"]) == {"a", "b"}
    df = assign_splits(table({"a": 30, "b": 8}), min_per_split=3)
    assert set(df["label"]) == {"a"}


def test_deterministic_and_independent_of_row_order():
    base = table({"a": 40, "b": 25, "c": 11})
    first = assign_splits(base, seed=7)
    shuffled = assign_splits(base.sample(frac=1, random_state=3), seed=7)
    pd.testing.assert_frame_equal(first, shuffled)
    other_seed = assign_splits(base, seed=8)
    assert not np.array_equal(first["split"].to_numpy(), other_seed["split"].to_numpy())


def test_adding_a_class_does_not_reshuffle_others():
    a = assign_splits(table({"a": 40, "b": 25}), seed=3)
    b = assign_splits(table({"a": 40, "b": 25, "c": 30}), seed=3)
    merged = a.merge(b, on=["path", "label"], suffixes=("_1", "_2"))
    assert (merged["split_1"] == merged["split_2"]).all()


def test_given_splits_are_kept_and_test_carved_from_train():
    df = table({"a": 30, "b": 30})
    df["split"] = ["val" if i % 5 == 0 else "train" for i in range(len(df))]
    out = assign_splits(df, seed=0)
    by_path = dict(zip(df["path"], df["split"], strict=True))
    for path, split in zip(out["path"], out["split"], strict=True):
        assert split == by_path[path] or (split == "test" and by_path[path] == "train")
    assert (out["split"] == "test").sum() > 0
    rasta = table({"a": 9})
    rasta["split"] = ["train"] * 5 + ["val"] * 2 + ["test"] * 2
    assert assign_splits(rasta)["split"].value_counts().to_dict() == {
        "train": 5,
        "val": 2,
        "test": 2,
    }


def test_bad_fractions_rejected():
    with pytest.raises(ConfigError, match=r"store\.fractions"):
        assign_splits(table({"a": 10}), fractions=(0.8, 0.3, 0.1))


# --------------------------------------------------------------------------- group split


def grouped_table(seed: int, n_groups: int = 48, n_classes: int = 3, mixed: float = 0.0):
    """Random artist-like groups of 1-20 images; ``mixed`` = share of off-class images."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(n_groups):
        home = g % n_classes  # every class gets several groups
        for i in range(int(rng.integers(1, 21))):
            label = int(rng.integers(n_classes)) if rng.random() < mixed else home
            rows.append((f"/img/c{home}/g{g:03d}_{i:03d}.jpg", f"c{label}", f"artist{g}"))
    return pd.DataFrame(rows, columns=["path", "label", "group"])


def splits_per(df: pd.DataFrame, column: str) -> pd.Series:
    return df.groupby(column)["split"].nunique()


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_group_split_never_puts_a_group_in_two_splits(seed: int) -> None:
    base = grouped_table(seed, n_groups=36 + 6 * seed)
    df = assign_splits(base, seed=seed, split_by="group")
    assert len(df) == len(base) and df.attrs["dropped_classes"] == []
    assert (splits_per(df, "group") == 1).all()
    assert df.attrs["split_by"] == "group"
    assert df.attrs["mixed_label_groups"] == 0 and df.attrs["ungrouped_rows"] == 0
    share = df["split"].value_counts(normalize=True)
    assert abs(share["train"] - 0.8) < 0.025
    assert abs(share["val"] - 0.1) < 0.025 and abs(share["test"] - 0.1) < 0.025
    per_class = df.groupby("label")["split"].value_counts(normalize=True).unstack()
    assert ((per_class["train"] - 0.8).abs() < 0.06).all(), per_class
    assert ((per_class[["val", "test"]] - 0.1).abs() < 0.04).all().all(), per_class
    # the label split of the same rows does break groups up: the check above has teeth
    by_label = assign_splits(base, seed=seed)
    assert (splits_per(by_label, "group") > 1).any()


def test_group_split_deterministic_independent_of_order_and_seeded() -> None:
    base = grouped_table(11, n_groups=40)
    first = assign_splits(base, seed=5, split_by="group")
    shuffled = assign_splits(base.sample(frac=1, random_state=2), seed=5, split_by="group")
    pd.testing.assert_frame_equal(first, shuffled)
    assert first.attrs == shuffled.attrs
    other = assign_splits(base, seed=6, split_by="group")
    assert not np.array_equal(first["split"].to_numpy(), other["split"].to_numpy())
    assert (splits_per(other, "group") == 1).all()


def test_group_split_keeps_small_classes_in_every_split() -> None:
    rows = [(f"/img/a/g{g}_{i}.jpg", "a", f"a{g}") for g in range(5) for i in range(10)]
    rows += [(f"/img/b/g{g}_{i}.jpg", "b", f"b{g}") for g in range(3) for i in range(3)]
    rows += [(f"/img/c/g{g}_{i}.jpg", "c", f"c{g}") for g in range(2) for i in range(5)]
    sizes = [50, 40, 30] + [2] * 30  # big groups must not eat the small splits' quota
    rows += [
        (f"/img/d/g{g:02d}_{i}.jpg", "d", f"d{g}") for g, n in enumerate(sizes) for i in range(n)
    ]
    df = assign_splits(pd.DataFrame(rows, columns=["path", "label", "group"]), split_by="group")
    groups = df.groupby(["label", "split"])["group"].nunique().unstack()
    assert groups.loc["a"].to_dict() == {"test": 1, "train": 3, "val": 1}
    assert groups.loc["b"].to_dict() == {"test": 1, "train": 1, "val": 1}
    assert df.attrs["dropped_classes"] == ["c"]  # 2 groups cannot fill 3 splits
    rows_d = df[df["label"] == "d"]["split"].value_counts().to_dict()
    assert rows_d == {"train": 144, "val": 18, "test": 18}


def test_mixed_label_groups_are_kept_whole_and_counted() -> None:
    base = grouped_table(7, n_groups=40, mixed=0.2)
    mixed = int((base.groupby("group")["label"].nunique() > 1).sum())
    assert mixed > 5
    df = assign_splits(base, seed=1, split_by="group")
    assert df.attrs["mixed_label_groups"] == mixed
    assert (splits_per(df, "group") == 1).all()


def test_rows_without_group_are_groups_of_their_own() -> None:
    base = grouped_table(3, n_groups=30)
    missing = base.index % 4 == 0
    base["group"] = base["group"].astype(object)
    base.loc[missing, "group"] = [None, "", "  ", np.nan] * (missing.sum() // 4) + [None] * (
        missing.sum() % 4
    )
    df = assign_splits(base, seed=0, split_by="group")
    assert df.attrs["ungrouped_rows"] == int(missing.sum())
    grouped = df[df["group"].map(lambda g: isinstance(g, str) and g.strip() != "")]
    assert (splits_per(grouped, "group") == 1).all()
    loose = df[~df["path"].isin(grouped["path"])]
    assert set(loose["split"]) == {"train", "val", "test"}  # not one big "no group" group


def test_group_split_without_groups_says_how_to_give_one() -> None:
    with pytest.raises(ConfigError) as err:
        assign_splits(table({"a": 30, "b": 30}), split_by="group")
    msg = str(err.value)
    assert "store.split_by='group'" in msg and "'group' column" in msg
    assert "dataset.reader.group_regex=" in msg and "dataset.reader.group_column=" in msg
    empty = table({"a": 30, "b": 30}).assign(group=[None, ""] * 30)
    with pytest.raises(ConfigError, match=r"empty in all 60 rows.*dataset\.reader\.group_regex"):
        assign_splits(empty, split_by="group")


def test_unknown_split_by_lists_the_choices() -> None:
    with pytest.raises(ConfigError) as err:
        assign_splits(table({"a": 30}), split_by="groups")
    msg = str(err.value)
    assert "store.split_by='groups'" in msg and "choose one of: group, label" in msg
    assert "did you mean group" in msg


# --------------------------------------------------------------------------- duplicates


def with_duplicates(base: pd.DataFrame, n_clusters: int = 20, size: int = 3) -> pd.DataFrame:
    """Give clusters of ``size`` rows (spread over the table) one dup_key each."""
    df = base.copy()
    df["dup_key"] = None
    rng = np.random.default_rng(0)
    picked = rng.choice(len(df), size=n_clusters * size, replace=False)
    for k in range(n_clusters):
        df.loc[picked[k * size : (k + 1) * size], "dup_key"] = f"hash{k}"
    return df


def test_duplicates_share_a_split_when_split_by_label() -> None:
    base = with_duplicates(table({"a": 100, "b": 60, "c": 40}))
    df = assign_splits(base, seed=1)
    assert (splits_per(df.dropna(subset=["dup_key"]), "dup_key") == 1).all()
    assert df.attrs["duplicate_groups"] == 20 and df.attrs["duplicate_rows"] == 60
    assert df.attrs["mixed_label_groups"] is None and df.attrs["ungrouped_rows"] is None
    counts = df.groupby(["label", "split"]).size().unstack()
    assert (abs(counts["val"] - counts.sum(axis=1) * 0.1) <= 3).all()
    # the same table without its dup_key does separate some of them
    plain = assign_splits(base.drop(columns="dup_key"), seed=1).merge(base[["path", "dup_key"]])
    assert (splits_per(plain.dropna(subset=["dup_key"]), "dup_key") > 1).any()


def test_duplicates_with_different_labels_still_share_a_split() -> None:
    base = table({"a": 50, "b": 50})
    base["dup_key"] = None
    for k in range(10):  # the same picture filed under a and under b
        base.loc[[k, 50 + k], "dup_key"] = f"h{k}"
    df = assign_splits(base, seed=4)
    assert (splits_per(df.dropna(subset=["dup_key"]), "dup_key") == 1).all()
    assert df.attrs["duplicate_groups"] == 10 and df.attrs["duplicate_rows"] == 20


def test_duplicates_share_a_split_when_split_by_group() -> None:
    base = with_duplicates(grouped_table(5, n_groups=40), n_clusters=6, size=2)
    df = assign_splits(base, seed=2, split_by="group")
    assert (splits_per(df.dropna(subset=["dup_key"]), "dup_key") == 1).all()
    assert (splits_per(df, "group") == 1).all()  # duplicates merge their groups, never split them
    assert df.attrs["duplicate_groups"] == 6 and df.attrs["duplicate_rows"] == 12


def test_without_duplicates_a_dup_key_column_changes_nothing() -> None:
    base = table({"a": 40, "b": 25, "c": 11})
    plain = assign_splits(base, seed=7)
    keyed = base.assign(dup_key=[f"h{i}" if i % 2 else None for i in range(len(base))])
    out = assign_splits(keyed, seed=7)
    assert list(out["split"]) == list(plain["split"])
    assert out.attrs["duplicate_groups"] == 0 and out.attrs["duplicate_rows"] == 0
    assert plain.attrs["duplicate_groups"] == 0 and plain.attrs["split_by"] == "label"


def test_duplicates_across_given_splits_are_counted_not_moved() -> None:
    df = table({"a": 30, "b": 30})
    df["split"] = ["val" if i % 5 == 0 else "train" for i in range(len(df))]
    df["dup_key"] = None
    df.loc[[0, 1], "dup_key"] = "across"  # val + train: the source's own leak
    df.loc[[2, 3, 4], "dup_key"] = "inside"  # all train: carved as one unit
    df.loc[[6, 7], "dup_key"] = "inside2"
    out = assign_splits(df, seed=0)
    assert out.attrs["duplicates_across_given_splits"] == 1
    assert out.attrs["duplicate_groups"] == 3 and out.attrs["duplicate_rows"] == 7
    by_path = dict(zip(out["path"], out["split"], strict=True))
    assert by_path[df.at[0, "path"]] == "val"
    for key in ("inside", "inside2"):
        assert len({by_path[p] for p in df.loc[df["dup_key"] == key, "path"]}) == 1


def test_group_split_carves_test_from_given_train_by_whole_groups() -> None:
    base = grouped_table(9, n_groups=40)
    artist = base["group"].str[6:].astype(int)
    base["split"] = np.where(artist % 7 == 0, "val", "train")
    out = assign_splits(base, seed=3, split_by="group")
    assert set(out["split"]) == {"train", "val", "test"}
    assert (splits_per(out, "group") == 1).all()
    given = dict(zip(base["path"], base["split"], strict=True))
    assert all(
        s == given[p] or (s == "test" and given[p] == "train")
        for p, s in zip(out["path"], out["split"], strict=True)
    )
    assert out.attrs["groups_across_given_splits"] == 0
    leaky = base.assign(split=np.where(base.index % 9 == 0, "val", "train"))
    assert assign_splits(leaky, split_by="group").attrs["groups_across_given_splits"] > 0


def test_cap_per_class_keeps_a_seeded_subset_of_the_larger_classes():
    base = table({"a": 50, "b": 20, "small": 5})
    capped = cap_per_class(base, 10, seed=1)
    assert capped["label"].value_counts().to_dict() == {"a": 10, "b": 10, "small": 5}
    assert capped.attrs["capped_rows"] == 50
    assert set(capped["path"]) <= set(base["path"]) and capped["path"].is_monotonic_increasing
    shuffled = cap_per_class(base.sample(frac=1, random_state=4), 10, seed=1)
    pd.testing.assert_frame_equal(capped, shuffled)  # rows' order does not matter
    assert set(cap_per_class(base, 10, seed=2)["path"]) != set(capped["path"])
    grown = pd.concat([base, pd.DataFrame({"path": ["/img/a/new.jpg"], "label": ["a"]})])
    kept_a = set(capped.loc[capped["label"] == "a", "path"])
    now_a = set(cap_per_class(grown, 10, seed=1).query("label == 'a'")["path"])
    assert len(kept_a - now_a) <= 1  # one more image swaps at most one of the chosen
    everything = cap_per_class(base, None, seed=1)
    assert len(everything) == len(base) and everything.attrs["capped_rows"] == 0


def test_max_per_class_is_checked_and_unset_keeps_old_store_hashes():
    with pytest.raises(ConfigError, match=r"store.max_per_class=2 .*integer >= 3"):
        StoreSettings(max_per_class=2)
    assert "max_per_class" not in settings_dict(
        StoreSettings()
    )  # stores made before it stay current
    assert settings_dict(StoreSettings(max_per_class=40))["max_per_class"] == 40
