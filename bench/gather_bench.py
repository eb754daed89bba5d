"""Gathering batches on a second thread against gathering them in the training loop.

One epoch of ``train_epoch`` over 60,000 synthetic float32 samples per case, with
``gather_ahead`` off and on, alternating in one process (best of ``--repeats`` each),
on the BLAS threads the trainer picks.  Also checks that both give the same weights.

    .venv/bin/python bench/gather_bench.py
    .venv/bin/python bench/gather_bench.py --cases 784-128-10/b32 --repeats 5
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

from train_bench import CASES, CORES, LR, MOMENTUM, synthetic

from training.engine.network import Network
from training.engine.optimizers import SGD
from training.engine.trainer import blas_threads, gathers_ahead, train_epoch


def one_epoch(sizes, batch, x, y, threads, ahead) -> tuple[float, bytes]:
    net = Network(sizes, "relu", loss="cross_entropy", dtype="float32", seed=0)
    opt = SGD(learning_rate=LR, momentum=MOMENTUM)
    state = opt.init_state(net.params)
    with threadpool_limits(threads, user_api="blas"):
        t0 = time.perf_counter()
        train_epoch(net, opt, state, x, y, batch, np.random.default_rng(0), gather_ahead=ahead)
        seconds = time.perf_counter() - t0
    return seconds, net.params.tobytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", help="comma-separated, e.g. 784-128-10/b32 (default: all)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    x, y, _ = synthetic(60_000, "float32")
    for sizes, batch in CASES:
        name = f"{'-'.join(map(str, sizes))}/b{batch}"
        if args.cases and name not in args.cases.split(","):
            continue
        threads = blas_threads(sizes, batch, CORES)
        best = {False: np.inf, True: np.inf}
        weights = {}
        for _ in range(args.repeats):
            for ahead in (False, True):
                seconds, weights[ahead] = one_epoch(sizes, batch, x, y, threads, ahead)
                best[ahead] = min(best[ahead], seconds)
        print(
            json.dumps(
                {
                    "case": name,
                    "blas_threads": threads,
                    "trainer_gathers_ahead": gathers_ahead(sizes, batch, threads, CORES),
                    "in_loop_samples_per_s": round(len(x) / best[False]),
                    "ahead_samples_per_s": round(len(x) / best[True]),
                    "ahead_over_in_loop": round(best[False] / best[True], 3),
                    "same_weights": weights[False] == weights[True],
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
