"""Refit (training/refit.py), through the real ``bptrain``: after early stopping chose the
epoch count, the published weights are trained again on the training and validation
rows; ``--no-refit`` publishes the best epoch's weights, as before refit existed."""

from __future__ import annotations

import json

import pytest

from tests.test_cli import FAST, bptrain, write_csv
from training.data import load, stratified_split
from training.store import ModelStore


def val_rows_csv(data, path, seed=0):
    """The validation rows of bptrain's split of ``data`` (defaults: 10 % validation,
    20 % test), as a CSV of their own."""
    lines = data.read_text().splitlines()
    _, val_idx, _ = stratified_split(load(str(data)), 0.1, 0.2, seed)
    path.write_text("\n".join([lines[0], *(lines[1 + i] for i in val_idx)]) + "\n")
    return path


def run(tmp_path, data, models, *flags):
    out = bptrain("--data", data, "--models-dir", models, *FAST, "--json", *flags)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["metrics"]


def val_loss_of_published(tmp_path, data, models):
    """``bptrain evaluate``'s loss of the published version on the validation rows."""
    val = val_rows_csv(data, tmp_path / "val.csv")
    ev = bptrain("evaluate", "--name", "model", "--data", val, "--models-dir", models, "--json")
    assert ev.returncode == 0, ev.stderr
    return json.loads(ev.stdout)["scores"]["loss"]


def test_refit_trains_on_train_and_val_rows_for_the_best_epoch_count(tmp_path):
    data = write_csv(tmp_path / "d.csv")
    models = tmp_path / "m"
    m = run(tmp_path, data, models)
    assert m["refit"] is True
    assert m["refit_rows"] == m["n_train"] + m["n_val"] and m["n_val"] > 0
    assert m["refit_epochs"] == m["best_epoch"] >= 1
    assert m["refit_train_loss"] > 0 and 0 <= m["refit_train_accuracy"] <= 1
    _, manifest = ModelStore(models).load("model")
    refit_keys = ("refit", "refit_epochs", "refit_rows", "refit_train_loss")
    assert {k: manifest.metrics[k] for k in refit_keys} == {k: m[k] for k in refit_keys}
    assert manifest.training["refit"] is True
    # The published weights learned from the validation rows: no longer the best epoch's.
    assert val_loss_of_published(tmp_path, data, models) != pytest.approx(m["val_loss"], rel=1e-4)


def test_no_refit_publishes_the_best_epochs_weights(tmp_path):
    data = write_csv(tmp_path / "d.csv")
    models = tmp_path / "m"
    m = run(tmp_path, data, models, "--no-refit")
    assert m["refit"] is False
    assert m["refit_epochs"] is None and m["refit_rows"] is None
    assert m["refit_train_loss"] is None
    # The loss of the published weights on the validation rows is the one recorded for
    # the best epoch, so these are the weights early stopping restored, not refitted.
    assert val_loss_of_published(tmp_path, data, models) == pytest.approx(m["val_loss"], rel=1e-4)
    refit = run(tmp_path, data, tmp_path / "r")
    assert refit["best_epoch"] == m["best_epoch"] and refit["val_loss"] == m["val_loss"]
    assert refit["test_loss"] != m["test_loss"]


@pytest.mark.parametrize("flags", [("--val-fraction", 0), ("--patience", "null")])
def test_no_refit_without_early_stopping(tmp_path, flags):
    data = write_csv(tmp_path / "d.csv")
    m = run(tmp_path, data, tmp_path / "m", *flags)
    assert m["refit"] is False and m["refit_epochs"] is None
