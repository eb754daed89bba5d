"""Refit: once early stopping has chosen how long to train, train again on every row.

Early stopping needs rows the network does not learn from: the validation part (10 %
by default).  On a small table that is a real loss: wine's split leaves 124 of its 178
rows for training and 18 for validation, and scikit-learn's default pipeline, which
``bench/quality_bench.py`` compares against, learns from both together.  So once the
first fit has found the best epoch count on the validation rows, ``refit`` trains again
from the very start of that fit (the same initial weights; the optimizer state it
started with, fresh or with ``--init-from`` the stored version's; the learning rate the
divergence guard settled on; the same shuffling seed) on the training and validation
rows together, for that many epochs, and publishes those weights.  The preprocessing
and target scaling stay as fitted on the training rows, so the validation rows are new
to nothing but the weights.  It goes through ``guarded_fit``, so a refit that diverges
restarts smaller like any fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from training.engine.trainer import History
from training.model import Model
from training.pipeline import Guarded, guarded_fit

# How long the refit trains, from the first fit's best epoch: "epochs" the same number
# of epochs (each now a pass over more rows), "steps" as many optimizer steps as the
# first fit took to its best epoch (fewer epochs, as an epoch over more rows has more
# batches).
# bench/quality_bench.py --refit-length measures both (BENCHMARKS.md).
LENGTH = "epochs"
LENGTHS = ("epochs", "steps")


@dataclass(frozen=True)
class Start:
    """Where the first fit started: the refit starts there too, so that it differs
    from the first fit only by its rows.  The weights are copied before the fit moves
    them in place; the optimizer state is not, as ``guarded_fit`` starts every attempt
    from a copy of the state it is given and never changes that."""

    params: np.ndarray
    state: dict[str, np.ndarray] | None

    @classmethod
    def of(cls, model: Model, state: dict[str, np.ndarray] | None) -> Start:
        return cls(model.network.params.copy(), state)


def applies(enabled: bool, history: History, patience: int | None, n_val: int) -> bool:
    """Whether to refit: only when early stopping chose the epoch count, that is with
    validation rows and a patience; otherwise there is nothing to choose again."""
    return enabled and n_val > 0 and patience is not None and history.best_epoch > 0


def refit_epochs(
    best_epoch: int, n_train: int, n_rows: int, batch_size: int, length: str | None = None
) -> int:
    """Epochs for the refit on ``n_rows`` rows, after the best epoch on ``n_train``:
    the same count, or (``length="steps"``) as many optimizer steps as that was."""
    length = length or LENGTH  # read when called: bench/quality_bench.py sets it
    if length not in LENGTHS:
        raise ValueError(f"unknown refit length {length!r}; expected one of {LENGTHS}")
    if length == "epochs":
        return best_epoch
    steps = best_epoch * math.ceil(n_train / min(batch_size, n_train))
    return max(1, round(steps / math.ceil(n_rows / min(batch_size, n_rows))))


@dataclass(frozen=True)
class Refitted:
    """A refit that ran: its guarded fit, and the epochs and rows it trained on."""

    guarded: Guarded
    epochs: int
    rows: int


def refit(
    model: Model,
    start: Start,
    x: np.ndarray,
    y: np.ndarray,
    epochs: int,
    callback: Any = None,
    **kw: Any,
) -> Refitted:
    """Train ``model`` again from ``start`` on (x, y), the training and validation rows
    together, for ``epochs`` with no validation and no early stopping (both need held
    out rows); ``kw`` are the first fit's own settings (batch size, schedule, seed).
    The optimizer is the model's, with the learning rate the first fit held at."""
    model.network.params[...] = start.params
    guarded = guarded_fit(
        model,
        model.optimizer,
        x,
        y,
        state=start.state,
        callback=callback,
        epochs=epochs,
        validation=None,
        patience=None,
        **kw,
    )
    return Refitted(guarded, epochs, x.shape[0])


def refit_metrics(done: Refitted | None) -> dict[str, Any]:
    """The refit's entries of the run's metrics: whether it ran, for how many epochs on
    how many rows, and its last epoch's loss and accuracy on those rows (no held-out
    rows are left to score it on but the test part)."""
    last = done.guarded.history.epochs[-1] if done else {}
    return {
        "refit": done is not None,
        "refit_epochs": done.epochs if done else None,
        "refit_rows": done.rows if done else None,
        "refit_train_loss": last.get("train_loss"),
        "refit_train_accuracy": last.get("train_accuracy"),
    }
