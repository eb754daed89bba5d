"""The epoch loop: shuffled mini-batches, learning-rate schedules, validation, early
stopping and a progress callback.

The hot loop (``train_epoch``) does nothing per batch but gather the rows, run the
forward and backward passes into reused buffers and take one optimizer step.  The
data set is never copied or shuffled in place: each batch is gathered through a
permutation of row indices, so peak memory stays near the size of the data.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np
from threadpoolctl import threadpool_limits

from training.engine.network import Network
from training.engine.optimizers import SGD

Array = np.ndarray
SCHEDULES = ("constant", "step", "inverse_time")


@dataclass(frozen=True)
class Schedule:
    """Learning rate per epoch: constant, step decay or inverse-time decay."""

    kind: str = "constant"
    step_size: int = 10  # step: multiply by gamma every step_size epochs
    gamma: float = 0.5
    decay: float = 0.01  # inverse_time: lr0 / (1 + decay * epoch)

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
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
    only products of several million multiply-adds are worth splitting; the shapes it
    was measured on in the real loop are in BENCHMARKS.md (bench/train_bench.py).
    """
    largest = max(a * b for a, b in pairwise(sizes)) * batch_size
    return cores if largest >= 4_000_000 else 1


def gathers_ahead(sizes: list[int], batch_size: int, threads: int, cores: int = 2) -> bool:
    """Whether a second thread should gather the batches (``train_epoch``'s gather_ahead).

    Only when the BLAS leaves a core idle, and only for batches big enough that their
    copy is worth moving off the training thread; small batches lose, as their rows
    then arrive from the other core's cache (BENCHMARKS.md, "Gathering the batches on
    the second core", bench/gather_bench.py).  With both cores on the BLAS, gathering
    ahead only competes.
    """
    return threads < cores and sizes[0] * batch_size >= 16_384


def train_epoch(
    net: Network,
    opt: SGD,
    state: dict[str, Array],
    x: Array,
    y: Array,
    batch_size: int,
    rng: np.random.Generator,
    learning_rate: float | None = None,
    gather_ahead: bool = False,
) -> None:
    """One pass over (x, y) in freshly shuffled mini-batches; x and y must be checked.
    The last batch, when short, steps with the learning rate times its share of a
    full batch, so every row of the epoch weighs the same.

    ``gather_ahead`` gathers the coming batches on a second thread while this one
    trains: worth it when the BLAS runs on one thread and a core is otherwise idle.
    Either way the batches, and so the weights, are the same.
    """
    n = x.shape[0]
    order = rng.permutation(n)
    lr = opt.learning_rate if learning_rate is None else learning_rate
    decay_mask = net.decay_mask() if opt.weight_decay else None
    grads = np.empty_like(net.params)
    slots = net.augmented_views(grads)
    full = n - n % batch_size
    gather = _gathered_ahead if gather_ahead else _gathered
    for xb, yb in gather(x, y, order[:full], batch_size):
        cache = net.forward_ones(xb)
        net.backprop(cache, yb, slots)
        opt.step(net.params, grads, state, learning_rate=lr, decay_mask=decay_mask)
    if full < n:  # the last, short batch
        idx = order[full:]
        cache = net.forward_rows(x[idx])
        net.backprop(cache, y[idx], slots)
        # Its step in proportion to its rows, as if it were that share of a full batch:
        # a batch of 1 row (353 rows in batches of 32) would otherwise move the weights
        # as far as 32 rows, on one row's noise, at the very end of every epoch
        # (BENCHMARKS.md, "Quality of the defaults": diabetes).
        share = len(idx) / batch_size
        opt.step(net.params, grads, state, learning_rate=lr * share, decay_mask=decay_mask)


def _gather_into(x: Array, y: Array, idx: Array, xb: Array, yb: Array, take: bool) -> None:
    # Rows go straight into a buffer whose last column stays 1 (the network's bias
    # column, see training/engine/network.py).  On the training thread, fancy indexing then
    # one copy was measured faster than np.take into the strided view; on the second
    # thread np.take was.  mode="clip" skips take's defensive copy (idx is in range).
    if take:
        np.take(x, idx, axis=0, out=xb[:, :-1], mode="clip")
    else:
        xb[:, :-1] = x[idx]
    np.take(y, idx, axis=0, out=yb, mode="clip")


def _gathered(x: Array, y: Array, order: Array, batch_size: int) -> Iterator[tuple[Array, Array]]:
    """Each batch gathered just before it is used, into one reused buffer."""
    xb = np.ones((batch_size, x.shape[1] + 1), dtype=x.dtype)
    yb = np.empty((batch_size, y.shape[1]), dtype=y.dtype)
    for start in range(0, len(order), batch_size):
        _gather_into(x, y, order[start : start + batch_size], xb, yb, take=False)
        yield xb, yb


# Bytes of rows gathered per hand-over between the threads (about 512 rows of 784
# float32 features): small enough that two chunks stay in the L2 caches, large enough
# that the hand-over between the threads is paid once per several batches; counted in
# bytes so that wide rows do not make the buffers large.  The chunk sizes tried are in
# BENCHMARKS.md ("Gathering the batches on the second core").
AHEAD_BYTES = 1_600_000


def _gathered_ahead(
    x: Array, y: Array, order: Array, batch_size: int
) -> Iterator[tuple[Array, Array]]:
    """Batches from chunks that a second thread gathers while the previous is trained on.

    Two chunk buffers alternate: the thread fills one while the batches of the other
    are used, and a chunk is only refilled after its last batch has been trained on.
    np.take releases the GIL while it copies, so the gathering runs on the idle core.
    """
    row_bytes = (x.shape[1] + 1) * x.itemsize + y.shape[1] * y.itemsize
    per_chunk = max(1, AHEAD_BYTES // (row_bytes * batch_size)) * batch_size
    buffers = [
        (
            np.ones((per_chunk, x.shape[1] + 1), dtype=x.dtype),
            np.empty((per_chunk, y.shape[1]), dtype=y.dtype),
        )
        for _ in range(2)
    ]
    starts = range(0, len(order), per_chunk)

    def fill(k: int) -> int:
        idx = order[starts[k] : starts[k] + per_chunk]
        xb, yb = buffers[k % 2]
        _gather_into(x, y, idx, xb[: len(idx)], yb[: len(idx)], take=True)
        return len(idx)

    with ThreadPoolExecutor(1, thread_name_prefix="gather") as pool:
        pending = pool.submit(fill, 0) if starts else None
        for k in range(len(starts)):
            rows = pending.result()
            if k + 1 < len(starts):
                pending = pool.submit(fill, k + 1)
            xc, yc = buffers[k % 2]
            for s in range(0, rows, batch_size):
                yield xc[s : s + batch_size], yc[s : s + batch_size]


def evaluate(net: Network, x: Array, y: Array, chunk: int = 2048) -> tuple[float, float | None]:
    """Mean loss and, for classifiers (one-hot targets), accuracy.

    In chunks, because each is copied with its ones column: 2,048 rows keep that copy
    small beside the data (a larger chunk raised the peak of BENCHMARKS.md's Memory run).
    """
    total, correct = 0.0, 0
    classifier = is_one_hot(y)
    for start in range(0, x.shape[0], chunk):
        cache = net.forward_rows(x[start : start + chunk])
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
    ahead = gathers_ahead(net.sizes, batch_size, threads, os.cpu_count() or 1)
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
            train_epoch(net, opt, state, x, y, batch_size, rng, lr, gather_ahead=ahead)
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
