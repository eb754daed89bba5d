"""Where a training batch spends its time: gather, forward, backward, optimizer step.

Times each phase inside the real loop (caches as cold as in training), for one case and
BLAS thread count; run it with 1 and 2 threads to see the element-wise phases slow down
when two OpenBLAS threads share the products.  ``--step numpy`` times the optimizer's
numpy path instead of its BLAS one (training/engine/blas.py); ``both`` runs the two side by side.

    .venv/bin/python bench/train_profile.py 784-512-512-10 128 --threads 1 2
    .venv/bin/python bench/train_profile.py 784-128-10 128 --threads 2 --step both
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from training.engine import blas
from training.engine.network import Network
from training.engine.optimizers import SGD


def profile(sizes: list[int], batch: int, threads: int, step: str, n: int = 60_000) -> dict:
    blas.enabled = step == "blas"
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, sizes[0]), dtype=np.float32)
    y = np.eye(sizes[-1], dtype=np.float32)[rng.integers(0, sizes[-1], n)]
    net = Network(sizes, "relu", loss="cross_entropy")
    opt = SGD(0.01, 0.9)
    state = opt.init_state(net.params)
    grads = np.empty_like(net.params)
    slots = net.augmented_views(grads)
    xb = np.ones((batch, sizes[0] + 1), np.float32)  # as train_epoch: a ones column
    yb = np.empty((batch, sizes[-1]), np.float32)
    order = rng.permutation(n)
    spent = np.zeros(4)
    batches = n // batch
    with threadpool_limits(threads, user_api="blas"):
        start = time.perf_counter()
        for b in range(batches):
            t0 = time.perf_counter()
            idx = order[b * batch : (b + 1) * batch]
            xb[:, :-1] = x[idx]
            np.take(y, idx, axis=0, out=yb, mode="clip")
            t1 = time.perf_counter()
            cache = net.forward_ones(xb)
            t2 = time.perf_counter()
            net.backprop(cache, yb, slots)
            t3 = time.perf_counter()
            opt.step(net.params, grads, state)
            t4 = time.perf_counter()
            spent += (t1 - t0, t2 - t1, t3 - t2, t4 - t3)
        total = time.perf_counter() - start
    us = spent / batches * 1e6
    return {
        "case": f"{'-'.join(map(str, sizes))}/b{batch}",
        "blas_threads": threads,
        "step": step,
        "gather_us": round(us[0]),
        "forward_us": round(us[1]),
        "backward_us": round(us[2]),
        "optimizer_us": round(us[3]),
        "batch_us": round(total / batches * 1e6),
        "samples_per_s": round(batches * batch / total),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", help="layer sizes, e.g. 784-512-512-10")
    parser.add_argument("batch", type=int)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--step", choices=["blas", "numpy", "both"], default="blas")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split("-")]
    steps = ["blas", "numpy"] if args.step == "both" else [args.step]
    for threads in args.threads:
        for step in steps:
            print(json.dumps(profile(sizes, args.batch, threads, step)), flush=True)


if __name__ == "__main__":
    main()
