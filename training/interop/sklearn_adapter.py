"""A fitted scikit-learn ``MLPClassifier`` / ``MLPRegressor`` (alone, or after a
``StandardScaler`` in a ``Pipeline``) as a Model.

Reads the estimator's public fitted attributes (``coefs_``, ``intercepts_``,
``activation``, ``out_activation_``, ``classes_``; the scaler's ``mean_`` and ``scale_``);
scikit-learn itself is not imported, and nothing is unpickled: the object is already in
memory.  scikit-learn's ``coefs_`` have bpserve's (n_in, n_out) layout.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from training.data import Standardizer
from training.interop.layers import InteropError, Layer, binary_to_softmax, build_model
from training.model import Model

ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
OUTPUTS = {"softmax": "softmax", "logistic": "sigmoid", "identity": "identity"}


def from_sklearn(
    estimator: Any,
    *,
    dtype: str = "float32",
    learning_rate: float | None = None,
    momentum: float | None = None,
) -> Model:
    """The estimator's network, preprocessing and classes, ready to serve and train.

    Classifiers train with cross-entropy (a binary one becomes a two-class softmax with
    the same probabilities), multi-label ones with binary cross-entropy, regressors with
    the quadratic loss (scikit-learn's squared error).
    """
    scaler, est = _split_pipeline(estimator)
    kind = type(est).__name__
    if kind not in ("MLPClassifier", "MLPRegressor"):
        raise InteropError(f"{kind} is not supported; expected MLPClassifier or MLPRegressor")
    if not hasattr(est, "coefs_"):
        raise InteropError(f"this {kind} is not fitted")
    hidden = ACTIVATIONS.get(est.activation)
    out = OUTPUTS.get(est.out_activation_)
    if hidden is None or out is None:
        raise InteropError(
            f"{kind} activation {est.activation!r} / output {est.out_activation_!r} "
            f"is not supported (loss {getattr(est, 'loss', '?')!r})"
        )
    dt = np.dtype(dtype)
    acts = [hidden] * (len(est.coefs_) - 1) + [out]
    layers = [
        Layer(np.ascontiguousarray(w, dtype=dt), np.asarray(b, dtype=dt), act)
        for w, b, act in zip(est.coefs_, est.intercepts_, acts)
    ]
    labels = None
    if kind == "MLPClassifier" and np.ndim(est.classes_) == 1:
        labels = [str(c) for c in est.classes_]
        if out == "sigmoid" and len(labels) == 2 and layers[-1].weight.shape[1] == 1:
            layers[-1] = binary_to_softmax(layers[-1])
        elif out == "sigmoid":  # multi-label: one independent unit per label
            labels = None
    return build_model(
        layers,
        standardizer=_standardizer(scaler, layers[0].weight.shape[0]),
        labels=labels,
        learning_rate=learning_rate,
        momentum=momentum,
        feature_names=[str(f) for f in est.feature_names_in_]
        if hasattr(est, "feature_names_in_")
        else None,
    )


def _split_pipeline(estimator: Any) -> tuple[Any, Any]:
    if not hasattr(estimator, "steps"):
        return None, estimator
    steps = [s for _, s in estimator.steps if s is not None and s != "passthrough"]
    if len(steps) == 1:
        return None, steps[0]
    if len(steps) == 2 and type(steps[0]).__name__ == "StandardScaler":
        return steps[0], steps[1]
    names = [type(s).__name__ for s in steps]
    raise InteropError(f"Pipeline {names}: expected [StandardScaler,] MLPClassifier/MLPRegressor")


def _standardizer(scaler: Any, n: int) -> Standardizer | None:
    if scaler is None:
        return None
    mean = getattr(scaler, "mean_", None)
    scale = getattr(scaler, "scale_", None)
    return Standardizer(
        np.zeros(n) if mean is None or not scaler.with_mean else np.asarray(mean, np.float64),
        np.ones(n) if scale is None or not scaler.with_std else np.asarray(scale, np.float64),
    )
