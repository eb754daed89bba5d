"""`bptrain evaluate` against scikit-learn's metrics, on a file whose classes are a
subset of the model's, in another order (so they must be remapped onto the model's)."""

import json

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from tests.test_cli import bptrain
from training.data import load
from training.store import ModelStore


def animals(path, n, seed, kinds, noise):
    rng = np.random.default_rng(seed)
    labels = rng.choice(kinds, n)
    centers = {"cat": (2, 0, 0), "dog": (0, 2, 0), "eel": (0, 0, 2)}
    rows = ["x1,x2,x3,label"] + [
        ",".join(f"{v:.4f}" for v in np.add(centers[k], rng.normal(0, noise, 3))) + f",{k}"
        for k in labels
    ]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_evaluate_remaps_classes_and_matches_scikit_learn(tmp_path):
    train = animals(tmp_path / "train.csv", 150, 0, ["cat", "dog", "eel"], 0.5)
    models = tmp_path / "m"
    out = bptrain("--data", train, "--name", "a", "--models-dir", models, "--epochs", 3, "--quiet")
    assert out.returncode == 0, out.stderr
    # Only dogs and eels, noisy enough that some are taken for cats or for each other:
    # the file's classes are ["dog", "eel"], indices 0 and 1, the model's 1 and 2.
    data = animals(tmp_path / "eval.csv", 200, 1, ["eel", "dog"], 1.3)
    ev = bptrain("evaluate", "--name", "a", "--data", data, "--models-dir", models, "--json")
    assert ev.returncode == 0, ev.stderr
    scores = json.loads(ev.stdout)["scores"]

    model, _ = ModelStore(models).load("a", 1)
    ds = load(data)
    truth = [ds.classes[i] for i in ds.y]
    predicted = [model.labels[i] for i in model.predict(ds.x).argmax(1)]
    labels = model.labels
    assert labels == ["cat", "dog", "eel"] and ds.classes == ["dog", "eel"]
    expected = confusion_matrix(truth, predicted, labels=labels)
    assert scores["confusion"] == expected.tolist()
    assert 0 < np.trace(expected) < len(truth)  # right and wrong answers both, cats too
    assert expected[:, 0].sum() > 0 and expected[0].sum() == 0
    precision, recall, _, support = precision_recall_fscore_support(
        truth, predicted, labels=labels, zero_division=0
    )
    assert list(scores["per_class"]) == labels
    for c, p, r, s in zip(labels, precision, recall, support):
        got = scores["per_class"][c]
        assert np.isclose(got["precision"], p) and np.isclose(got["recall"], r), (c, got)
        assert got["support"] == s
    assert np.isclose(scores["accuracy"], np.mean(np.array(truth) == np.array(predicted)))
    assert scores["n"] == len(truth)
