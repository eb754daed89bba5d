"""Tables as people have them, end to end: a CSV with a text column, an integer-coded
category and holes, trained by ``bptrain`` and served by a real gunicorn; rows sent as
objects keyed by column name or as lists of cells, holes and unseen categories in them,
answered exactly as ``bptrain evaluate`` scores the same rows."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.server import Server
from tests.test_cli import bptrain
from training.store import ModelStore

TOKEN = "t0ken"
COLORS = ["black", "white", "red"]
HEADER = ["color", "weight", "age", "note"]


def pets_csv(path, n=300, seed=0):
    """Class from color, weight and an integer-coded age group; ``note`` is always empty;
    about 8 % of the other cells are empty, written as '', 'NA' or 'NaN'."""
    rng = np.random.default_rng(seed)
    lines = [",".join([*HEADER, "kind"])]
    for _ in range(n):
        color = rng.choice(COLORS)
        weight = rng.gamma(3, 2)
        age = int(rng.integers(1, 4))
        s = COLORS.index(color) + 0.4 * weight - 1.2 * age + rng.normal(0, 0.5)
        cells = [str(color), f"{weight:.3f}", str(age), ""]
        for j in range(3):
            if rng.random() < 0.08:
                cells[j] = rng.choice(["", "NA", "NaN"])
        lines.append(",".join(cells) + "," + ("big" if s > 1.5 else "small"))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def pets(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pets")
    data = pets_csv(tmp / "pets.csv")
    models = tmp / "models"
    out = bptrain(
        "--data", data, "--name", "pets", "--models-dir", models, "--categorical", "age",
        "--epochs", 20, "--quiet", "--json",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "column 'note' is empty in every training row" in out.stderr
    with Server(models, default_model="pets", train_token=TOKEN) as server:
        yield tmp, models, server, json.loads(out.stdout)


def evaluate_outputs(tmp, models, rows):
    """``bptrain evaluate --outputs`` on a CSV holding ``rows`` (cells as written)."""
    path = tmp / "rows.csv"
    lines = [",".join([*HEADER, "kind"])] + [",".join([*r, "big"]) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    out = bptrain(
        "evaluate", "--name", "pets", "--data", path, "--models-dir", models, "--json", "--outputs"
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["outputs"]


def test_columns_are_described(pets):
    _, _, server, result = pets
    status, info = server.request("GET", "/models/pets")
    assert status == 200
    cols = {c["name"]: c for c in info["columns"]}
    assert cols["color"] == {"name": "color", "kind": "categorical", "categories": sorted(COLORS)}
    assert cols["age"] == {"name": "age", "kind": "categorical", "categories": ["1", "2", "3"]}
    assert cols["weight"]["kind"] == "numeric" and cols["note"]["kind"] == "dropped"
    assert result["metrics"]["test_accuracy"] > 0.8


def test_holes_and_unseen_categories_answer_as_evaluate(pets):
    tmp, models, server, _ = pets
    cells = [
        ["red", "6.5", "2", ""],
        ["purple", "3.1", "1", ""],  # a color never seen in training
        ["", "NA", "", ""],  # holes everywhere
        ["black", "9.0", "7", ""],  # an age group never seen
        ["white", "", "3", ""],
    ]
    want = evaluate_outputs(tmp, models, cells)

    def cell(v, j):
        if v in ("", "NA"):
            return None
        return float(v) if j == 1 else (int(v) if j == 2 else v)

    as_objects = [{h: cell(v, j) for j, (h, v) in enumerate(zip(HEADER, r)) if v} for r in cells]
    as_lists = [[cell(v, j) for j, v in enumerate(r)] for r in cells]
    for inputs in (as_objects, as_lists):
        status, reply = server.request("POST", "/predict", {"inputs": inputs})
        assert status == 200, reply
        np.testing.assert_allclose(reply["outputs"], want, rtol=1e-6, atol=1e-7)
    # A hole is filled: not the same answer as the row with its cell present (row 0).
    assert not np.allclose(want[0], want[4])
    # The store's model agrees, and an unseen category is not an error anywhere.
    model, _ = ModelStore(models).load("pets")
    assert model.preprocessing.code(0, "purple") == 3.0  # the unseen slot


def test_object_rows_refuse_unknown_keys_and_bad_cells(pets):
    server = pets[2]
    status, reply = server.request("POST", "/predict", {"inputs": [{"colour": "red"}]})
    assert status == 422 and reply["error"]["code"] == "unknown_column"
    assert "'colour'" in reply["error"]["message"] and "color" in reply["error"]["message"]
    status, reply = server.request("POST", "/predict", {"inputs": [{"weight": "heavy"}]})
    assert status == 422 and reply["error"]["code"] == "invalid_cell"
    assert "inputs[0].weight" in reply["error"]["message"]
    status, reply = server.request("POST", "/predict", {"inputs": [["red", 1.0]]})
    assert status == 422 and reply["error"]["code"] == "wrong_feature_count"
    # A missing key is a hole, as a null is.
    a = server.request("POST", "/predict", {"inputs": [{"color": "red"}]})[1]
    b = server.request("POST", "/predict", {"inputs": [["red", None, None, None]]})[1]
    assert a["outputs"] == b["outputs"]


def test_train_step_on_object_rows_and_v2_on_numbers(pets):
    _, _, server, _ = pets
    row = {"color": "red", "weight": 4.0, "age": 2}
    before = server.request("POST", "/predict", {"inputs": [row]})[1]["outputs"][0]
    status, reply = server.request(
        "POST", "/train-step", {"inputs": [row, {"color": "black"}], "targets": ["big", "small"]},
        token=TOKEN,
    )  # fmt: skip
    assert status == 200 and reply["step"] == 1, reply
    after = server.request("POST", "/predict", {"inputs": [row]})[1]["outputs"][0]
    assert after[0] > before[0]  # "big" is the first class: the step moved towards it
    # V2 takes numbers: an integer-coded category is looked up as /predict does it.
    body = {
        "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", "data": [0, 4.0, 2, 0]}]
    }
    status, v2 = server.request("POST", "/v2/models/pets/infer", body)
    assert status == 200, v2
    mine = server.request("POST", "/predict", {"inputs": [[0, 4.0, 2, 0]]})[1]["outputs"][0]
    np.testing.assert_allclose(v2["outputs"][0]["data"], mine, rtol=1e-6)


def test_v2_binary_nan_is_a_hole_as_null_is_in_predict(pets):
    server = pets[2]
    row = np.array([[1.0, np.nan, 2.0, np.nan]], dtype="<f4")
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [1, 4],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": row.nbytes},
                }
            ]
        }
    ).encode()
    status, v2 = server.request(
        "POST",
        "/v2/models/pets/infer",
        raw=head + row.tobytes(),
        headers={"Inference-Header-Content-Length": str(len(head))},
    )
    assert status == 200, v2
    mine = server.request("POST", "/predict", {"inputs": [[1, None, 2, None]]})[1]["outputs"][0]
    np.testing.assert_allclose(v2["outputs"][0]["data"], mine, rtol=1e-6)
    row[0, 1] = np.inf  # Inf is not a hole
    status, v2 = server.request(
        "POST",
        "/v2/models/pets/infer",
        raw=head + row.tobytes(),
        headers={"Inference-Header-Content-Length": str(len(head))},
    )
    assert status == 400 and "NaN, Inf" in v2["error"]
