"""The column preprocessing on its own: fitted on training rows, bounded on any row."""

from __future__ import annotations

import numpy as np
import pytest

from training import columns
from training.preprocessing import CLIP, Preprocessor, prep_from_manifest, prep_to_manifest


def table(rng, n):
    """Columns of every kind a user brings: wide-range, sparse non-negative (non-zero in
    a few rows), negative, constant, mostly holes, and a text column."""
    x = np.column_stack(
        [
            rng.normal(1000, 300, n),
            np.where(rng.random(n) < 0.02, rng.integers(1, 256, n), 0.0),
            rng.normal(-5, 0.01, n),
            np.full(n, 7.0),
            np.where(rng.random(n) < 0.9, np.nan, rng.normal(0, 1, n)),
            np.full(n, np.nan),  # the text column's place
        ]
    )
    text = {5: np.array(rng.choice(["a", "b", "c", None], n), dtype=object)}
    return x, text


NAMES = ["wide", "sparse", "narrow", "constant", "holes", "color"]


@pytest.mark.parametrize("scaling", ["auto", "floor", "standard", "minmax"])
def test_no_scaled_value_exceeds_the_bound_on_unseen_rows(scaling, monkeypatch):
    """The stated bound: every network input lies in [-CLIP, CLIP], whatever the row;
    one-hot and indicator inputs are 0 or 1."""
    monkeypatch.setattr(columns, "SCALING", scaling)
    rng = np.random.default_rng(0)
    x, text = table(rng, 300)
    pre, warnings = Preprocessor.fit(x, text, NAMES)
    assert warnings == []
    unseen = np.array(
        [
            [1e12, 1e9, 1e6, -1e30, 1e37, np.nan],
            [-1e12, -1e9, -1e6, 8.0, -1e37, np.nan],
            [np.nan] * 6,
            [0.0, 255.0, -5.0, 7.0, 0.0, np.nan],
        ]
    )
    cells = {5: np.array(["a", "zzz-never-seen", None, "c"], dtype=object)}
    out = pre.transform(pre.codes(unseen, cells).astype(np.float32))
    assert out.shape == (4, pre.width) and np.isfinite(out).all()
    assert np.abs(out).max() <= CLIP
    cat = next(c for c in pre.cols if c.kind == "categorical")
    assert cat.categories == ["a", "b", "c"] and cat.indicator  # None was a hole in training
    onehot = out[:, -len(cat.categories) - 2 : -1]
    assert set(np.unique(onehot)) <= {0.0, 1.0} and (onehot.sum(axis=1) == 1).all()
    assert onehot[1, -1] == 1  # the unseen category lands in its own slot
    # Training rows themselves: the sparse column's rare non-zeros are not blown up.
    train_out = pre.transform(pre.codes(x, text))
    assert np.abs(train_out).max() <= CLIP
    # The constant column is neutralised: 0 for every row, seen or not.
    at = sum(c.width for c in pre.cols[:3])
    assert (out[:, at] == 0).all() and (train_out[:, at] == 0).all()


def test_holes_get_the_training_median_and_an_indicator():
    x = np.array([[1.0], [2.0], [np.nan], [10.0]])
    pre, _ = Preprocessor.fit(x, {}, ["v"])
    col = pre.cols[0]
    assert col.fill == 2.0 and col.indicator and pre.width == 2
    out = pre.transform(np.array([[np.nan], [2.0]]))
    assert out[0, 0] == out[1, 0] and out[:, 1].tolist() == [1.0, 0.0]


def test_a_column_empty_in_every_training_row_is_dropped_with_a_warning():
    x = np.array([[1.0, np.nan], [2.0, np.nan], [3.0, np.nan]])
    pre, warnings = Preprocessor.fit(x, {}, ["a", "empty"])
    assert warnings == ["column 'empty' is empty in every training row"]
    assert pre.cols[1].kind == "dropped" and pre.width == 1 and pre.n_columns == 2
    assert pre.transform(np.array([[2.0, 123.0]])).shape == (1, 1)


def test_integer_coded_categories_and_the_manifest_round_trip():
    x = np.array([[1.0, 0.5], [3.0, 0.1], [2.0, 0.7], [3.0, 0.9], [np.nan, 0.2]])
    pre, _ = Preprocessor.fit(x, {}, ["group", "v"], categorical={0})
    assert pre.cols[0].categories == ["1", "2", "3"] and pre.cols[0].fill == 2  # "3" twice
    rows = np.array([[3.0, 0.3], [7.0, 0.3], [np.nan, 2.0]])
    back, targets = prep_from_manifest(prep_to_manifest(pre), None)
    assert targets is None
    assert np.array_equal(back.transform(back.codes(rows)), pre.transform(pre.codes(rows)))
    assert pre.codes(rows)[:, 0].tolist()[:2] == [2.0, 3.0]  # "3" is index 2; 7 unseen
    with pytest.raises(ValueError, match="clip"):
        prep_from_manifest({**prep_to_manifest(pre), "clip": 50.0}, None)
