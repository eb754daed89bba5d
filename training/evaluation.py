"""Scores of a model on labelled data: loss, accuracy, per-class precision and recall,
and the confusion matrix (rows: true class, columns: predicted)."""

from __future__ import annotations

from typing import Any

import numpy as np

from training.data import Dataset
from training.model import Model
from training.pipeline import regression_scores, rows_of


def score(model: Model, ds: Dataset) -> dict[str, Any]:
    """Scores on ``ds`` (raw cells, preprocessed by the model as the service does); the
    loss is the training loss (scaled targets), R^2, MAE and RMSE are in the targets' units."""
    net = model.network
    x = model.prepare(rows_of(model, ds))
    y = ds.target_matrix(net.dtype)
    cache = net.forward_rows(x)
    loss = net.loss.value(cache.output, cache.zs[-1], model.scale_targets(y))
    out: dict[str, Any] = {"loss": loss, "n": len(ds.x)}
    if ds.classes is None:
        out.update(regression_scores(model.to_units(cache.output.copy()), y))
        return out
    k = len(ds.classes)
    pred = cache.output.argmax(axis=1)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (ds.y, pred), 1)
    tp = np.diag(confusion).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(confusion.sum(0) > 0, tp / confusion.sum(0), 0.0)
        recall = np.where(confusion.sum(1) > 0, tp / confusion.sum(1), 0.0)
    out["accuracy"] = float(tp.sum() / len(ds.x))
    out["per_class"] = {
        c: {"precision": float(p), "recall": float(r), "support": int(s)}
        for c, p, r, s in zip(ds.classes, precision, recall, confusion.sum(1))
    }
    out["confusion"] = confusion.tolist()
    return out


def format_report(scores: dict[str, Any]) -> str:
    lines = [f"loss {scores['loss']:.4f}"]
    if "accuracy" not in scores:
        lines.append(f"r2 {scores['r2']:.4f}  mae {scores['mae']:.4g}  rmse {scores['rmse']:.4g}")
        return "\n".join(lines)
    lines.append(f"accuracy {scores['accuracy'] * 100:.2f} % of {scores['n']}")
    lines.append(f"{'class':>10} {'precision':>9} {'recall':>7} {'support':>7}")
    for c, m in scores["per_class"].items():
        lines.append(f"{c:>10} {m['precision']:9.3f} {m['recall']:7.3f} {m['support']:7d}")
    lines.append("confusion (rows true, columns predicted):")
    width = max(len(str(v)) for row in scores["confusion"] for v in row) + 1
    for c, row in zip(scores["per_class"], scores["confusion"]):
        lines.append(f"{c:>10} " + "".join(f"{v:>{width}}" for v in row))
    return "\n".join(lines)
