"""A model: a network plus everything needed to use it and to keep training it.

A weight file alone is useless to the service: it needs the input size, the class
names, the preprocessing fitted on the training data and, for online training, the
optimizer's settings and state.  ``Model`` keeps them together; the store writes and
reads it whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from training.engine.network import Network
from training.engine.optimizers import SGD
from training.preprocessing import Preprocessor, Standardizer, TargetScaler

FEW_ROWS = 64  # predict_labels picks up to this many rows in Python

Array = np.ndarray


@dataclass
class Model:
    """Rows go in *column space* (one value per input column; training/preprocessing.py),
    outputs come out in the targets' own units."""

    network: Network
    preprocessing: Standardizer | Preprocessor
    labels: list[str] | None = None  # class names, for classifiers
    feature_names: list[str] | None = None
    optimizer: SGD = field(default_factory=SGD)
    optimizer_state: dict[str, Array] | None = None
    targets: TargetScaler | None = None  # regression: how targets were scaled for training

    def __post_init__(self) -> None:
        n = self.network.n_inputs
        pre = self.preprocessing
        if isinstance(pre, Standardizer):
            if pre.mean.shape != (n,) or pre.scale.shape != (n,):
                raise ValueError(f"preprocessing must have {n} means and scales")
        elif pre.width != n:
            raise ValueError(f"preprocessing makes {pre.width} inputs, the network takes {n}")
        if self.targets is not None and self.targets.offset.shape != (self.network.n_outputs,):
            raise ValueError(f"target scaling must have {self.network.n_outputs} offsets")
        if self.labels is not None and len(self.labels) != self.network.n_outputs:
            raise ValueError(
                f"{self.network.n_outputs} outputs need as many labels, got {len(self.labels)}"
            )
        if self.optimizer_state is None:
            self.optimizer_state = self.optimizer.init_state(self.network.params)
        if isinstance(pre, Standardizer):
            # Format 1, in the network's dtype, so predict does not upcast every batch.
            dt = self.network.dtype
            self._mean = pre.mean.astype(dt)
            self._inv_scale = (1.0 / pre.scale).astype(dt)
            self.transform = self.standardize

    @property
    def standardizer(self) -> Standardizer | Preprocessor:
        return self.preprocessing

    @property
    def n_features(self) -> int:
        """Values per row a client sends: one per input column."""
        return self.preprocessing.n_columns

    def check_rows(self, x: object) -> Array:
        """Column-space rows as a checked matrix of the network's dtype (NaN = a hole,
        allowed where the preprocessing can fill it)."""
        dt = self.network.dtype
        arr = np.asarray(x, dtype=dt)
        if arr.ndim == 1:
            arr = arr.reshape(1, -1)
        if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] != self.n_features:
            raise ValueError(f"inputs must be (batch x {self.n_features}), got {arr.shape}")
        bad = np.isinf(arr) if self.preprocessing.allows_missing else ~np.isfinite(arr)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise ValueError(f"inputs contain NaN or Inf (first at row {r}, column {c})")
        return arr

    def prepare(self, x: Array) -> Array:
        """Checked, preprocessed network inputs in the network's dtype."""
        return self.transform(self.check_rows(x))

    def transform(self, x: Array) -> Array:
        """Network inputs for checked column-space rows (the fitted preprocessing)."""
        return self.preprocessing.transform(x)  # type: ignore[union-attr]

    def standardize(self, x: Array) -> Array:
        """Format 1: standardised rows; ``x`` must be a checked matrix of the network's dtype.

        One new array, scaled in place: ``(x - mean) * scale`` would make two.
        """
        out = np.subtract(x, self._mean)
        out *= self._inv_scale
        return out

    def predict(self, x: Array) -> Array:
        """Outputs (in the targets' units) for raw column-space rows."""
        return self.to_units(self.network.output(self.prepare(x)))

    def output(self, x: Array) -> Array:
        """``predict`` for rows the caller has already checked (the service, as it parses:
        one check per request, not three)."""
        return self.to_units(self.network.output(self.transform(x)))

    def to_units(self, out: Array) -> Array:
        """Network outputs in the targets' own units (regression); unchanged otherwise."""
        return self.targets.back(out) if self.targets is not None else out

    def scale_targets(self, y: Array) -> Array:
        """Target rows in the targets' own units to what the network trains on."""
        return self.targets.forward(y) if self.targets is not None else y

    def predict_labels(
        self, outputs: Array, values: list[list[float]] | None = None
    ) -> list[str] | None:
        """Each row's class: the first largest output, as ``argmax`` (NaN counts as largest).

        ``values`` is ``outputs.tolist()`` where the caller has it (the service's reply).
        A few rows are then picked with Python's ``max``: in a live bpserve worker, numpy's
        argmax for a 1-row reply cost far more than these comparisons (BENCHMARKS.md,
        Serving).  Where NaN could make ``max`` disagree with ``argmax`` (the row sums are
        NaN), numpy picks.
        """
        if self.labels is None:
            return None
        if values is not None and len(values) <= FEW_ROWS:
            total = sum(map(sum, values))
            if total == total:  # no NaN anywhere
                return [self.labels[row.index(max(row))] for row in values]
        return [self.labels[i] for i in outputs.argmax(axis=1).tolist()]

    def targets_from_labels(self, labels: list) -> Array:
        """One-hot rows for class names; a ValueError names the first unknown one."""
        if self.labels is None:
            raise ValueError("this model has no class labels; send target vectors")
        index = {name: i for i, name in enumerate(self.labels)}
        rows = []
        for i, lab in enumerate(labels):
            key = str(lab)
            if key not in index:
                raise ValueError(f"unknown label {lab!r} at targets[{i}]; known: {self.labels}")
            rows.append(index[key])
        return np.eye(len(self.labels), dtype=self.network.dtype)[rows]

    def copy(self) -> Model:
        """A model whose parameters and optimizer state can change without touching this one."""
        return Model(
            self.network.copy(),
            self.preprocessing,
            self.labels,
            self.feature_names,
            self.optimizer,
            {k: v.copy() for k, v in (self.optimizer_state or {}).items()},
            self.targets,
        )
