"""The training goals' own yardstick: a compact vectorized numpy trainer, timed beside the
engine and PyTorch in the same rounds.

Issue 2 says such a trainer, "written as a reference on a machine of this kind", reached
about 5x, 2-3x, 1.5-2x and 1.0-1.1x PyTorch and 75 % of the BLAS peak on the four cases of
bench/train_bench.py.  This is the shortest honest version of one (Nielsen's network.py
on whole mini-batches): x[idx] gathers, z = a W + b, ReLU, softmax, delta = (p - y) / B,
BP2-BP4, classical momentum, numpy's own temporaries.  It runs on the same BLAS threads
the engine picks per case, so that the comparison is of the code, not of the threads.
Each round: the BLAS peak, then the three epochs in rotating order; figures are medians
of what one round measured (as in bench/train_bench.py).

    .venv/bin/python bench/compact_reference.py                # float32, 3 rounds
    .venv/bin/python bench/compact_reference.py --samples 10000 --rounds 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from itertools import pairwise

import numpy as np
from threadpoolctl import threadpool_limits
from train_bench import (
    CASES,
    CORES,
    LR,
    MOMENTUM,
    n_weights,
    paired_rounds,
    synthetic,
    time_engine,
    time_torch,
)

from training.engine.trainer import blas_threads, gathers_ahead


def compact_epoch(sizes: list[int], batch: int, x: np.ndarray, y: np.ndarray, seed: int):
    """Seconds for one epoch of the compact trainer, and its weights and biases (for the
    test)."""
    rng = np.random.default_rng(seed)
    dtype = x.dtype
    ws = [(rng.standard_normal((a, b)) * np.sqrt(2 / a)).astype(dtype) for a, b in pairwise(sizes)]
    bs = [np.zeros(b, dtype) for b in sizes[1:]]
    vw = [np.zeros_like(w) for w in ws]
    vb = [np.zeros_like(b) for b in bs]
    last = len(ws) - 1
    t0 = time.perf_counter()
    perm = rng.permutation(len(x))
    for start in range(0, len(x) - batch + 1, batch):
        idx = perm[start : start + batch]
        a, target = x[idx], y[idx]
        acts, zs = [a], []
        for i, (w, b) in enumerate(zip(ws, bs)):
            z = a @ w + b
            if i < last:
                a = np.maximum(z, 0)
            else:
                e = np.exp(z - z.max(axis=1, keepdims=True))
                a = e / e.sum(axis=1, keepdims=True)
            zs.append(z)
            acts.append(a)
        delta = (a - target) / batch  # BP1 for softmax with cross-entropy
        for i in range(last, -1, -1):
            g_w, g_b = acts[i].T @ delta, delta.sum(axis=0)  # BP4, BP3
            if i:
                delta = (delta @ ws[i].T) * (zs[i - 1] > 0)  # BP2, before W changes
            vw[i] = MOMENTUM * vw[i] - LR * g_w
            vb[i] = MOMENTUM * vb[i] - LR * g_b
            ws[i] += vw[i]
            bs[i] += vb[i]
    return time.perf_counter() - t0, ws, bs


def compare(sizes, batch, x, y, labels, rounds: int, have_torch: bool) -> dict:
    threads = blas_threads(sizes, batch, CORES)
    ahead = gathers_ahead(sizes, batch, threads, CORES)
    flops = 6 * n_weights(sizes) * len(x)
    dtype = str(x.dtype)

    def compact(r: int) -> float:
        with threadpool_limits(threads, user_api="blas"):
            return compact_epoch(sizes, batch, x, y, r)[0]

    sides = {
        "compact": compact,
        "engine": lambda r: time_engine(sizes, batch, x, y, dtype, r, threads, ahead),
    }
    if have_torch:
        sides["torch"] = lambda r: time_torch(sizes, batch, x, labels, dtype, r)
    few = slice(0, 20 * batch)  # untimed first, as in train_bench
    with threadpool_limits(threads, user_api="blas"):
        compact_epoch(sizes, batch, x[few], y[few], 0)
    time_engine(sizes, batch, x[few], y[few], dtype, 0, threads, ahead)
    if have_torch:
        time_torch(sizes, batch, x[few], labels[few], dtype, 0)
    times, peaks, stolen = paired_rounds(sides, dtype, rounds)

    def median_ratio(top: str, bottom: str) -> float:
        return round(statistics.median(b / t for t, b in zip(times[top], times[bottom])), 2)

    def fraction(side: str) -> float:
        return round(statistics.median(flops / t / p for t, p in zip(times[side], peaks)), 3)

    row = {
        "case": f"{'-'.join(map(str, sizes))}/b{batch}",
        "dtype": dtype,
        "rounds": rounds,
        "blas_threads": threads,
        "cpu_steal": stolen,
        "engine_over_compact": median_ratio("engine", "compact"),
        "compact_fraction_of_blas_peak": fraction("compact"),
        "engine_fraction_of_blas_peak": fraction("engine"),
    }
    if have_torch:
        row["compact_vs_torch"] = median_ratio("compact", "torch")
        row["engine_vs_torch"] = median_ratio("engine", "torch")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=60_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    try:
        import torch  # noqa: F401

        have_torch = True
    except ImportError:
        have_torch = False
    x, y, labels = synthetic(args.samples, args.dtype)
    for sizes, batch in CASES:
        print(json.dumps(compare(sizes, batch, x, y, labels, args.rounds, have_torch)), flush=True)


if __name__ == "__main__":
    main()
