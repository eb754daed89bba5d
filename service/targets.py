"""The targets of an online step, read the same way by both train APIs.

The native ``/train-step`` takes class labels, target vectors, or one number per row
(a 1-output regression); V2's ``train`` takes a ``target`` tensor or BYTES labels.
Both end in one (rows x outputs) array in the targets' own units.  The APIs differ
only in the status of a refusal: the native API answers 422 for a body it parsed but
cannot apply, the Open Inference Protocol 400 for any bad request (``status``).
"""

from __future__ import annotations

import numpy as np

from service.errors import ApiError
from service.schemas import to_matrix
from training.model import Model


def from_labels(model: Model, labels: list, status: int) -> np.ndarray:
    """One-hot rows for class labels; an unknown label is refused by name."""
    try:
        return model.targets_from_labels(labels)
    except ValueError as exc:
        raise ApiError(status, "unknown_label", str(exc)) from None


def from_json(model: Model, targets: list, max_rows: int) -> np.ndarray:
    """``/train-step``'s ``targets``: labels, vectors, or one number per row."""
    if model.labels is None and all(type(t) in (int, float) for t in targets):
        targets = [[float(t)] for t in targets]  # one number per row: a 1-output regression
    if targets and isinstance(targets[0], list):
        net = model.network
        return to_matrix(targets, "targets", net.n_outputs, max_rows, net.dtype)
    if any(isinstance(t, list) for t in targets):
        raise ApiError(422, "invalid_targets", "targets must be all labels or all vectors")
    return from_labels(model, targets, 422)


def check_rows(x: np.ndarray, y: np.ndarray, status: int) -> None:
    """One target row per input row."""
    if len(y) != len(x):
        raise ApiError(status, "row_mismatch", f"{len(x)} input rows but {len(y)} targets")
