"""The data readers on real files: NPZ, bad encodings, non-finite values, and the
code-recognizer format's errors, each naming the file (and the line where there is one)."""

from __future__ import annotations

import numpy as np
import pytest

from training.data import DataError, load


def npz(tmp_path, **arrays):
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    return path


def test_read_npz_labels_targets_and_regression(tmp_path):
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    ds = load(npz(tmp_path, X=x, y=np.array(["b", "a", "b", "c", "a", "c"])))
    assert ds.classes == ["a", "b", "c"] and ds.y.tolist() == [1, 0, 1, 2, 0, 2]
    assert ds.x.dtype == np.float64 and np.array_equal(ds.x, x)
    assert ds.fingerprint  # sha256 of the file
    ints = load(npz(tmp_path, X=x, y=np.array([10, 9, 10, 2, 2, 9])))
    assert ints.classes == ["2", "9", "10"]  # integer labels sort as numbers
    onehot = load(npz(tmp_path, X=x, y=np.eye(3)[[0, 1, 2, 0, 1, 2]]))
    assert onehot.classes == ["0", "1", "2"] and onehot.y.tolist() == [0, 1, 2, 0, 1, 2]
    reg = load(npz(tmp_path, X=x, y=np.linspace(0, 1, 6)))
    assert reg.classes is None and reg.y.shape == (6, 1)


@pytest.mark.parametrize(
    "arrays,problem",
    [
        ({"X": np.zeros((3, 2))}, "needs arrays 'X' and 'y', found ['X']"),
        ({"X": np.zeros(3), "y": np.zeros(3)}, "X must be a 2-D numeric array"),
        ({"X": np.array([["a", "b"]] * 3), "y": np.zeros(3)}, "X must be a 2-D numeric array"),
        ({"X": np.zeros((3, 2)), "y": np.zeros(2)}, "X has 3 rows but y has 2"),
        (
            {"X": np.array([[0, 1], [np.nan, 2], [3, 4]]), "y": np.array([0, 1, 0])},
            "NaN or Inf in the features of example 2",
        ),
        (
            {"X": np.array([[0, 1], [1, 2], [3, np.inf]]), "y": np.array([0, 1, 0])},
            "NaN or Inf in the features of example 3",
        ),
    ],
)
def test_read_npz_errors_name_the_problem(tmp_path, arrays, problem):
    """With ``missing="error"`` (today's strict reading); by default a NaN is a hole,
    filled by the fitted preprocessing, and only an Inf is bad data."""
    path = npz(tmp_path, **arrays)
    with pytest.raises(DataError) as err:
        load(path, missing="error")
    assert err.value.path == str(path) and problem in err.value.problem
    if "NaN or Inf" not in problem or np.isinf(arrays["X"]).any():
        with pytest.raises(DataError) as err:
            load(path)
        assert problem in err.value.problem
    else:
        assert np.isnan(load(path).x).sum() == 1


def test_a_file_that_is_not_npz(tmp_path):
    path = tmp_path / "d.npz"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match="not a readable npz file"):
        load(path)


@pytest.mark.parametrize("fmt,suffix", [("csv", ".csv"), ("code-recognizer", ".200")])
def test_non_utf8_files_are_named(tmp_path, fmt, suffix):
    path = tmp_path / f"latin1{suffix}"
    text = "a,b,label\n1,2,caf\xe9\n" if fmt == "csv" else "0.5 0.5 > 1 0\n\xe9\n"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(DataError) as err:
        load(path, fmt)
    assert err.value.path == str(path) and "not UTF-8 text" in err.value.problem
    assert "at byte" in err.value.problem


@pytest.mark.parametrize("value", ["nan", "inf", "-Infinity"])
def test_non_finite_values_in_a_csv(tmp_path, value):
    path = tmp_path / "d.csv"
    path.write_text(f"a,b,label\n1,2,x\n3,{value},y\n5,6,x\n")
    with pytest.raises(DataError, match="NaN or Inf in the features of example 2"):
        load(path, missing="error")
    if value == "nan":  # by default a hole, filled by the fitted preprocessing
        assert np.isnan(load(path).x[1, 1])
    else:
        with pytest.raises(DataError, match="NaN or Inf in the features of example 2"):
            load(path)


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_non_finite_regression_targets_are_refused(tmp_path, value):
    path = tmp_path / "d.csv"
    path.write_text(f"a,b,target\n1,2,0.5\n3,4,{value}\n5,6,1.5\n")
    with pytest.raises(DataError, match="NaN or Inf in the targets of example 2"):
        load(path)


CODE_RECOGNIZER_ERRORS = [
    ("0.1 0.2 > 1 0\n0.3 0.4 1 0\n", 2, "expected 'features > targets'"),
    ("0.1 0.2 > 1 0\n0.3 > 0.4 > 1\n", 2, "expected 'features > targets'"),
    ("0.1 0.2 > 1 0\n0.3 x > 0 1\n", 2, "non-numeric value"),
    ("0.1 0.2 > 1 0\r\r\n\r\r\n0.3 > 0 1\r\r\n", 3, "ragged row: 1 features and 2 targets"),
    ("0.1 0.2 > 1 0\n0.3 0.4 > 1\n", 2, "ragged row: 2 features and 1 targets"),
    ("0.1 0.2 >\n", 1, "missing targets"),
]


@pytest.mark.parametrize("text,line,problem", CODE_RECOGNIZER_ERRORS)
def test_code_recognizer_format_errors_name_the_line(tmp_path, text, line, problem):
    path = tmp_path / "x.200"
    path.write_bytes(text.encode())
    with pytest.raises(DataError) as err:
        load(path)
    assert (err.value.line, problem in err.value.problem) == (line, True), str(err.value)


def test_code_recognizer_empty_and_non_finite(tmp_path):
    path = tmp_path / "x.200"
    path.write_bytes(b"\r\r\n\r\r\n")
    with pytest.raises(DataError, match="no examples in the file"):
        load(path)
    path.write_bytes(b"0.1 0.2 > 1 0\r\r\n0.3 inf > 0 1\r\r\n")
    with pytest.raises(DataError, match="NaN or Inf in the features of example 2"):
        load(path)
    path.write_bytes(b"0.1 0.2 > 1 0\r\r\n0.3 nan > 0 1\r\r\n")
    with pytest.raises(DataError, match="NaN or Inf in the features of example 2"):
        load(path, missing="error")
    path.write_bytes(b"0.1 0.2 > 1 0\r\r\n0.3 0.4 > 0 1\r\r\n")
    ds = load(path)  # "\r\r\n" ends one line; the one-hot targets make two classes
    assert ds.classes == ["0", "1"] and ds.y.tolist() == [0, 1]
