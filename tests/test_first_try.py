"""``bptrain --data my.csv`` with no other flag, on data as people have it: text columns
and holes are encoded and filled (``--missing error`` keeps the old strict message), and a
learning rate that diverges is restarted smaller, bounded and reported."""

from __future__ import annotations

import json

import numpy as np

from tests.test_cli import bptrain
from training.store import ModelStore


def colors_csv(path, n=200, seed=0):
    rng = np.random.default_rng(seed)
    lines = ["color,size,label"]
    for i in range(n):
        color = "black" if i == 0 else rng.choice(["black", "white"])
        size = rng.normal(5 if color == "black" else 8, 1)
        cell = "" if i % 10 == 3 else f"{size:.2f}"
        lines.append(f"{color},{cell},{'a' if color == 'black' else 'b'}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_text_and_empty_cells_train_by_default_and_error_with_missing_error(tmp_path):
    data = colors_csv(tmp_path / "c.csv")
    strict = bptrain("--data", data, "--models-dir", tmp_path / "m", "--missing", "error")
    assert strict.returncode == 3
    assert f"bptrain: bad data: {data}:2: non-numeric value 'black' in column 'color'" in (
        strict.stderr
    )
    assert not (tmp_path / "m").exists()
    out = bptrain("--data", data, "--models-dir", tmp_path / "m", "--quiet", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["metrics"]["test_accuracy"] > 0.95
    _, manifest = ModelStore(tmp_path / "m").load("model")
    assert manifest.format_version == 2
    kinds = [c["kind"] for c in manifest.preprocessing.columns]
    assert kinds == ["categorical", "numeric"]
    assert manifest.preprocessing.columns[1]["indicator"] is True  # size had holes


def test_a_diverging_learning_rate_restarts_smaller_and_says_so(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (300, 4))
    y = 5000 + 800 * x[:, 0] - 300 * x[:, 1] ** 2 + rng.normal(0, 50, 300)
    path = tmp_path / "r.csv"
    path.write_text(
        "a,b,c,d,y\n" + "".join(",".join(f"{v:.4f}" for v in (*r, t)) + "\n" for r, t in zip(x, y))
    )
    out = bptrain("--data", path, "--models-dir", tmp_path / "m", "--lr", 5, "--quiet", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    m = result["metrics"]
    assert m["restarts"] >= 1 and m["learning_rate"] < 5
    assert m["learning_rate"] == 5 / 4 ** m["restarts"]
    assert "restarting at" in out.stderr and len(result["warnings"]) == m["restarts"]
    assert m["test_r2"] > 0.8
    _, manifest = ModelStore(tmp_path / "m").load("model")
    assert manifest.metrics["restarts"] == m["restarts"]
    assert manifest.optimizer.learning_rate == m["learning_rate"]
    assert len(manifest.training["divergence_restarts"]) == m["restarts"]
