"""The epoch loop: shuffled mini-batches, learning-rate schedules, validation, early
stopping and a progress callback.

The hot loop (``train_epoch``) does nothing per batch but gather the rows, run the
forward and backward passes into reused buffers and take one optimizer step.  The
data set is never copied or shuffled in place: each batch is gathered through a
permutation of row indices, so peak memory stays near the size of the data.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np
from threadpoolctl import threadpool_limits

from training.network import Network
from training.optimizers import SGD

Array = np.ndarray


@dataclass(frozen=True)
class Schedule:
    """Learning rate per epoch: constant, step decay or inverse-time decay."""

    kind: str = "constant"
    step_size: int = 10  # step: multiply by gamma every step_size epochs
    gamma: float = 0.5
    decay: float = 0.01  # inverse_time: lr0 / (1 + decay * epoch)

    def __post_init__(self) -> None:
        if self.kind not in ("constant", "step", "inverse_time"):
            raise ValueError(
                f"unknown schedule {self.kind!r}; expected constant, step or inverse_time"
            )
        if self.step_size < 1:
            raise ValueError(f"schedule step_size must be >= 1, got {self.step_size}")

    def rate(self, lr0: float, epoch: int) -> float:
        if self.kind == "step":
            return lr0 * self.gamma ** (epoch // self.step_size)
        if self.kind == "inverse_time":
            return lr0 / (1.0 + self.decay * epoch)
        return lr0


def blas_threads(sizes: list[int], batch_size: int, cores: int = 2) -> int:
    """BLAS threads worth using for one training step of this shape.

    Two OpenBLAS threads make the products faster, but the element-wise work between
    them slower (the other core holds half of every product's output in its cache), so
    only products of several million multiply-adds are worth splitting.  Measured on a
    2-core machine in the real loop: 784x128 at batch 32 is faster on one thread,
    at batch 128 on two (bench/train_bench.py, BENCHMARKS.md).
    """
    largest = max(a * b for a, b in pairwise(sizes)) * batch_size
    return cores if largest >= 4_000_000 else 1


def train_epoch(
    net: Network,
    opt: SGD,
    state: dict[str, Array],
    x: Array,
    y: Array,
    batch_size: int,
    rng: np.random.Generator,
    learning_rate: float | None = None,
) -> None:
    """One pass over (x, y) in freshly shuffled mini-batches; x and y must be checked."""
    n = x.shape[0]
    order = rng.permutation(n)
    decay_mask = net.decay_mask() if opt.weight_decay else None
    grads = np.empty_like(net.params)
    # The batch is gathered straight into a buffer whose last column stays 1 (the
    # network's bias column, see training/network.py).
    xb = np.ones((batch_size, x.shape[1] + 1), dtype=x.dtype)
    yb = np.empty((batch_size, y.shape[1]), dtype=y.dtype)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        if len(idx) == batch_size:
            # Fancy indexing then one copy was measured faster than np.take into the
            # strided view; mode="clip" skips take's defensive copy (idx is in range).
            xb[:, :-1] = x[idx]
            np.take(y, idx, axis=0, out=yb, mode="clip")
            cache = net._forward_with_ones(xb)
            by = yb
        else:  # the last, short batch
            cache, by = net._forward(x[idx]), y[idx]
        net._backward(cache, by, grads)
        opt.step(net.params, grads, state, learning_rate=learning_rate, decay_mask=decay_mask)


def evaluate(net: Network, x: Array, y: Array, chunk: int = 2048) -> tuple[float, float | None]:
    """Mean loss and, for classifiers (one-hot targets), accuracy.

    In chunks, because each is copied with its ones column: 2,048 rows keep that copy
    small beside the data (8,192 took the memory benchmark's peak from 1.78x to 1.91x).
    """
    total, correct = 0.0, 0
    classifier = is_one_hot(y)
    for start in range(0, x.shape[0], chunk):
        cache = net._forward(x[start : start + chunk])
        yb = y[start : start + chunk]
        total += net.loss.value(cache.output, cache.zs[-1], yb) * len(yb)
        if classifier:
            correct += int((cache.output.argmax(1) == yb.argmax(1)).sum())
    n = x.shape[0]
    return total / n, (correct / n if classifier else None)


def is_one_hot(y: Array) -> bool:
    return y.shape[1] > 1 and bool(((y == 0) | (y == 1)).all()) and bool((y.sum(1) == 1).all())


@dataclass
class History:
    epochs: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False


def fit(
    net: Network,
    opt: SGD,
    x: Array,
    y: Array,
    *,
    epochs: int,
    batch_size: int,
    state: dict[str, Array] | None = None,
    validation: tuple[Array, Array] | None = None,
    schedule: Schedule = Schedule(),
    patience: int | None = None,
    seed: int = 0,
    callback: Callable[[dict], None] | None = None,
    threads: int | None = None,
) -> tuple[History, dict[str, Array]]:
    """Train ``net`` in place; return the history and the optimizer state.

    With ``patience``, training stops once the monitored loss (validation if given,
    else training) has not improved for that many epochs, and the weights and
    optimizer state of the best epoch are restored.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    x = net.check_inputs(x)
    y = net.check_targets(y, x.shape[0])
    if validation is not None:
        vx = net.check_inputs(validation[0], "validation inputs")
        vy = net.check_targets(validation[1], vx.shape[0])
    state = opt.init_state(net.params) if state is None else state
    rng = np.random.default_rng(seed)
    batch_size = min(batch_size, x.shape[0])
    threads = threads or blas_threads(net.sizes, batch_size)
    history = History()
    best = (np.inf, net.params.copy(), {k: v.copy() for k, v in state.items()})
    # Divergence is caught below as non-finite weights and raised with advice; numpy's
    # overflow warnings on the way there would only repeat it, less clearly.
    with (
        threadpool_limits(limits=threads, user_api="blas"),
        np.errstate(over="ignore", invalid="ignore"),
    ):
        for epoch in range(epochs):
            t0 = time.perf_counter()
            lr = schedule.rate(opt.learning_rate, epoch)
            train_epoch(net, opt, state, x, y, batch_size, rng, lr)
            if not np.isfinite(net.params).all():
                raise FloatingPointError(
                    f"training diverged in epoch {epoch + 1} (non-finite weights); "
                    "lower the learning rate"
                )
            record = {"epoch": epoch + 1, "learning_rate": lr}
            record["train_loss"], record["train_accuracy"] = evaluate(net, x, y)
            monitored = record["train_loss"]
            if validation is not None:
                record["val_loss"], record["val_accuracy"] = evaluate(net, vx, vy)
                monitored = record["val_loss"]
            record["seconds"] = time.perf_counter() - t0
            history.epochs.append(record)
            if callback is not None:
                callback(record)
            if monitored < best[0]:
                best = (monitored, net.params.copy(), {k: v.copy() for k, v in state.items()})
                history.best_epoch = epoch + 1
            elif patience is not None and epoch + 1 - history.best_epoch >= patience:
                history.stopped_early = True
                break
    if patience is not None and history.best_epoch:
        net.params[...] = best[1]
        for k in state:
            state[k][...] = best[2][k]
    return history, state
