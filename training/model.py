"""A model: a network plus everything needed to use it and to keep training it.

A weight file alone is useless to the service: it needs the input size, the class
names, the preprocessing fitted on the training data and, for online training, the
optimizer's settings and state.  ``Model`` keeps them together; the store writes and
reads it whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from training.data import Standardizer
from training.network import Network
from training.optimizers import SGD

FEW_ROWS = 64  # predict_labels picks up to this many rows in Python

Array = np.ndarray


@dataclass
class Model:
    network: Network
    standardizer: Standardizer
    labels: list[str] | None = None  # class names, for classifiers
    feature_names: list[str] | None = None
    optimizer: SGD = field(default_factory=SGD)
    optimizer_state: dict[str, Array] | None = None

    def __post_init__(self) -> None:
        n = self.network.n_inputs
        if self.standardizer.mean.shape != (n,) or self.standardizer.scale.shape != (n,):
            raise ValueError(f"preprocessing must have {n} means and scales")
        if self.labels is not None and len(self.labels) != self.network.n_outputs:
            raise ValueError(
                f"{self.network.n_outputs} outputs need as many labels, got {len(self.labels)}"
            )
        if self.optimizer_state is None:
            self.optimizer_state = self.optimizer.init_state(self.network.params)
        # Preprocessing in the network's dtype, so predict does not upcast every batch.
        dt = self.network.dtype
        self._mean = self.standardizer.mean.astype(dt)
        self._inv_scale = (1.0 / self.standardizer.scale).astype(dt)

    @property
    def n_features(self) -> int:
        return self.network.n_inputs

    def prepare(self, x: Array) -> Array:
        """Checked, standardised inputs in the network's dtype."""
        return self.standardize(self.network.check_inputs(x))

    def standardize(self, x: Array) -> Array:
        """Standardised rows; ``x`` must already be a checked matrix of the network's dtype.

        One new array, scaled in place: ``(x - mean) * scale`` would make two.
        """
        out = np.subtract(x, self._mean)
        out *= self._inv_scale
        return out

    def predict(self, x: Array) -> Array:
        """Output activations for raw (unstandardised) feature rows."""
        return self.network.output(self.prepare(x))

    def output(self, x: Array) -> Array:
        """``predict`` for rows the caller has already checked (the service, as it parses:
        one check per request, not three)."""
        return self.network.output(self.standardize(x))

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
            self.standardizer,
            self.labels,
            self.feature_names,
            self.optimizer,
            {k: v.copy() for k, v in (self.optimizer_state or {}).items()},
        )
