"""From a loaded data set to a trained model: fit the preprocessing and the target
scaling on the training rows, then train with a divergence guard.

``bptrain`` (training/cli.py) and bench/quality_bench.py both train through here, so
the benchmark measures exactly what a user's ``bptrain --data my.csv`` does.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from training.data import DataError, Dataset
from training.engine.network import Network
from training.engine.optimizers import SGD
from training.engine.trainer import History, fit
from training.model import Model
from training.preprocessing import Preprocessor, Standardizer, TargetScaler

# A failed attempt restarts from the initial weights with the learning rate divided by
# this, at most RESTARTS times (bench/quality_bench.py, BENCHMARKS.md).
RESTART_FACTOR, RESTARTS = 4.0, 4
# An epoch whose training loss exceeds the best one so far by this factor is diverging.
BLOWUP = 2.0


class Diverging(FloatingPointError):
    """Training loss became non-finite or grew far above its best."""


def rows_of(model: Model, ds: Dataset, source: str = "-") -> np.ndarray:
    """The data set's features in the model's column space (categories as indices)."""
    if ds.x.shape[1] != model.n_features:
        raise DataError(source, f"{ds.x.shape[1]} features, but the model takes {model.n_features}")
    pre = model.preprocessing
    if isinstance(pre, Preprocessor):
        return pre.codes(ds.x, ds.text)
    if ds.text or np.isnan(ds.x).any():
        raise DataError(source, "this model (format 1) takes numbers only, with no empty cells")
    return ds.x


def new_model(
    ds: Dataset,
    train_idx: np.ndarray,
    net: Network,
    opt: SGD,
    categorical: list[str],
    source: str = "-",
) -> tuple[Model, list[str]]:
    """A model whose preprocessing (and, for regression, target scaling) is fitted on
    the training rows only; returns it and the warnings (columns dropped)."""
    names = ds.feature_names or [f"x{i}" for i in range(ds.x.shape[1])]
    unknown = [c for c in categorical if c not in names]
    if unknown:
        raise DataError(source, f"--categorical names {unknown}, not columns of {names}")
    cat = {names.index(c) for c in categorical}
    train = ds.subset(train_idx)
    pre, warnings = Preprocessor.fit(train.x, train.text, names, cat)
    targets = None if ds.is_classification else TargetScaler.fit(train.y)
    return Model(net, pre, ds.classes, names, opt, targets=targets), warnings


def input_width(ds: Dataset, train_idx: np.ndarray, categorical: list[str]) -> int:
    """Network inputs the fitted preprocessing will make (fits it once, cheaply)."""
    names = ds.feature_names or [f"x{i}" for i in range(ds.x.shape[1])]
    cat = {names.index(c) for c in categorical if c in names}
    train = ds.subset(train_idx)
    return Preprocessor.fit(train.x, train.text, names, cat)[0].width


@dataclass
class Guarded:
    history: History
    state: dict[str, np.ndarray]
    restarts: int = 0
    learning_rate: float = 0.0
    notes: list[str] = field(default_factory=list)


def guarded_fit(
    model: Model,
    opt: SGD,
    x: np.ndarray,
    y: np.ndarray,
    state: dict[str, np.ndarray] | None,
    callback: Any = None,
    **kw: Any,
) -> Guarded:
    """``fit``, restarted from the initial weights and optimizer state with a smaller
    learning rate while it diverges (non-finite, or a training loss BLOWUP times its
    best), at most RESTARTS times; the model's optimizer ends with the rate that held."""
    net = model.network
    params0 = net.params.copy()
    state0 = None if state is None else {k: v.copy() for k, v in state.items()}
    lr, notes = opt.learning_rate, []
    for attempt in range(RESTARTS + 1):
        best = [np.inf]

        def watch(record: dict, best: list[float] = best) -> None:
            loss = record["train_loss"]
            if not np.isfinite(loss) or loss > BLOWUP * best[0]:
                raise Diverging(f"training loss {loss:.4g} in epoch {record['epoch']}")
            best[0] = min(best[0], loss)
            if callback is not None:
                callback(record)

        trial = replace(opt, learning_rate=lr)
        start = None if state0 is None else {k: v.copy() for k, v in state0.items()}
        try:
            history, st = fit(net, trial, x, y, state=start, callback=watch, **kw)
        except FloatingPointError as exc:  # fit's own non-finite check, or watch's
            if attempt == RESTARTS:
                raise FloatingPointError(
                    f"training diverged ({exc}) at every learning rate down to {lr:.3g}; "
                    "lower --lr or check the data"
                ) from None
            lower = lr / RESTART_FACTOR
            note = f"diverged at learning rate {lr:.3g} ({exc}); restarting at {lower:.3g}"
            print(f"bptrain: {note}", file=sys.stderr, flush=True)
            notes.append(note)
            net.params[...] = params0
            lr /= RESTART_FACTOR
            continue
        model.optimizer = trial
        return Guarded(history, st, attempt, lr, notes)
    raise AssertionError("unreachable")


def regression_scores(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """R^2 (over all outputs, as scikit-learn's uniform average), MAE and RMSE, in the
    targets' own units."""
    pred, y = pred.astype(np.float64), y.astype(np.float64)
    resid = ((y - pred) ** 2).sum(axis=0)
    total = ((y - y.mean(axis=0)) ** 2).sum(axis=0)
    r2 = np.where(total > 0, 1 - resid / np.where(total > 0, total, 1), 0.0)
    return {
        "r2": float(r2.mean()),
        "mae": float(np.abs(y - pred).mean()),
        "rmse": float(np.sqrt(((y - pred) ** 2).mean())),
    }


__all__ = ["Standardizer", "guarded_fit", "new_model", "regression_scores", "rows_of"]
