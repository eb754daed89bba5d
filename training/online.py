"""One online training step: the single code path for a live step and for its replay.

Every worker replays the journal through this function, so bit-identical inputs,
weights and optimizer state give bit-identical results (same dtype, same operations,
BLAS on the same thread count).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.engine.optimizers import SGD
from training.model import Model


class NonFiniteStep(ValueError):
    """The step would make the loss or the weights non-finite; nothing was changed."""


@dataclass(frozen=True)
class StepResult:
    model: Model
    loss_before: float
    loss_after: float
    correct: int  # rows the weights before the step classified right (progressive validation)


def apply_step(
    model: Model, x: np.ndarray, y: np.ndarray, learning_rate: float, momentum: float
) -> StepResult:
    """A new model one SGD step on from ``model`` (which is not changed).

    ``x`` holds column-space rows (``Model.check_rows``; the preprocessing runs here) and
    ``y`` target rows as the network trains on them (``Model.scale_targets`` applied),
    both in the network's dtype: the journal records exactly these, so a replay repeats
    the step bit for bit.
    """
    base = model.optimizer
    opt = SGD(learning_rate, momentum, base.nesterov, base.weight_decay, base.clip_norm)
    new = model.copy()
    net = new.network
    with np.errstate(all="ignore"):
        xs = new.transform(x)
        cache = net.forward_rows(xs)
        loss_before = net.loss.value(cache.output, cache.zs[-1], y)
        grads = net.backward_into(cache, y, np.empty_like(net.params))
        opt.step(
            net.params,
            grads.flat,
            new.optimizer_state,
            decay_mask=net.decay_mask() if opt.weight_decay else None,
        )
        after = net.forward_rows(xs)
        loss_after = net.loss.value(after.output, after.zs[-1], y)
    if not (np.isfinite(loss_before) and np.isfinite(loss_after) and np.isfinite(net.params).all()):
        raise NonFiniteStep("this step would make the weights or the loss non-finite")
    correct = int((cache.output.argmax(1) == y.argmax(1)).sum()) if new.labels else 0
    return StepResult(new, float(loss_before), float(loss_after), correct)
