import numpy as np
import pandas as pd
import pytest

from arttl.data.split import assign_splits
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
