"""Training speed of the engine against PyTorch on the CPU, side by side in one run.

One epoch over 60,000 synthetic samples per case, ReLU hidden layers and a softmax /
cross-entropy output on both sides, SGD with momentum 0.9, both sides given the
machine's cores (torch.set_num_threads; the engine picks its BLAS threads per shape).
Prints one JSON object per case, then one for the BLAS peak and one for memory.

    .venv/bin/python bench/train_bench.py            # all cases
    .venv/bin/python bench/train_bench.py --quick    # 10,000 samples, a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from itertools import pairwise

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from training.network import Network
from training.optimizers import SGD
from training.trainer import blas_threads, gathers_ahead, train_epoch

CASES = [
    ([784, 30, 10], 10),
    ([784, 128, 10], 32),
    ([784, 128, 10], 128),
    ([784, 512, 512, 10], 128),
]
CORES = os.cpu_count() or 2
LR, MOMENTUM = 0.01, 0.9


def synthetic(n: int, dtype: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 784), dtype=np.float32).astype(dtype, copy=False)
    teacher = rng.standard_normal((784, 10), dtype=np.float32).astype(dtype)
    labels = (x @ teacher).argmax(1)
    y = np.eye(10, dtype=dtype)[labels]
    return x, y, labels


def n_weights(sizes: list[int]) -> int:
    return sum(a * b for a, b in pairwise(sizes))


def time_engine(sizes, batch, x, y, dtype, repeats, threads, ahead):
    best = np.inf
    for r in range(repeats):
        net = Network(sizes, "relu", loss="cross_entropy", dtype=dtype, seed=r)
        opt = SGD(learning_rate=LR, momentum=MOMENTUM)
        state = opt.init_state(net.params)
        rng = np.random.default_rng(r)
        with threadpool_limits(threads, user_api="blas"):
            t0 = time.perf_counter()
            train_epoch(net, opt, state, x, y, batch, rng, gather_ahead=ahead)
            best = min(best, time.perf_counter() - t0)
    return best


def time_torch(sizes, batch, x, labels, dtype, repeats):
    import torch

    torch.set_num_threads(CORES)
    tdtype = torch.float32 if dtype == "float32" else torch.float64
    tx = torch.from_numpy(x).to(tdtype)
    ty = torch.from_numpy(labels)
    best = np.inf
    for r in range(repeats):
        torch.manual_seed(r)
        layers = []
        for i, (a, b) in enumerate(pairwise(sizes)):
            layers.append(torch.nn.Linear(a, b, dtype=tdtype))
            if i < len(sizes) - 2:
                layers.append(torch.nn.ReLU())
        model = torch.nn.Sequential(*layers)
        opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
        loss_fn = torch.nn.CrossEntropyLoss()
        t0 = time.perf_counter()
        perm = torch.randperm(len(tx))
        for start in range(0, len(tx), batch):
            idx = perm[start : start + batch]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(tx[idx]), ty[idx])
            loss.backward()
            opt.step()
        best = min(best, time.perf_counter() - t0)
    return best


def blas_peak(dtype: str, n: int = 2048, repeats: int = 5) -> float:
    """Best FLOP/s of an n x n matrix product with every core: the roof to compare to."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    out = np.empty_like(a)
    with threadpool_limits(CORES, user_api="blas"):
        np.matmul(a, b, out=out)
        best = min(_timed(lambda: np.matmul(a, b, out=out)) for _ in range(repeats))
    return 2 * n**3 / best


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def memory_child(n: int) -> None:
    """Run in a fresh process: peak RSS of a real training run against the data size."""
    from training.trainer import fit

    x, y, _ = synthetic(n, "float32")
    data_bytes = x.nbytes + y.nbytes
    net = Network([784, 128, 10], "relu", loss="cross_entropy")
    fit(net, SGD(learning_rate=LR, momentum=MOMENTUM), x, y, epochs=1, batch_size=128)
    peak = _vm_hwm()
    print(
        json.dumps(
            {
                "case": "memory",
                "samples": n,
                "data_mb": round(data_bytes / 2**20, 1),
                "peak_rss_mb": round(peak / 2**20, 1),
                "peak_over_data": round(peak / data_bytes, 3),
            }
        )
    )


def _vm_hwm() -> int:
    # Not ru_maxrss: Linux carries that across execve from the forking parent, which here
    # is the benchmark with torch loaded.  VmHWM belongs to this process image alone.
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=60_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="10,000 samples, one repeat")
    parser.add_argument("--dtypes", default="float32,float64")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child)
        return
    if args.quick:
        args.samples, args.repeats = 10_000, 1
    try:
        import torch  # noqa: F401

        have_torch = True
    except ImportError:
        have_torch = False
        print(json.dumps({"note": "torch not installed: `make bench` installs torch==2.13.0"}))

    for dtype in args.dtypes.split(","):
        peak = blas_peak(dtype)
        print(json.dumps({"case": "blas_peak", "dtype": dtype, "gflops": round(peak / 1e9, 1)}))
        x, y, labels = synthetic(args.samples, dtype)
        for sizes, batch in CASES:
            threads = blas_threads(sizes, batch, CORES)
            ahead = gathers_ahead(sizes, batch, threads, CORES)
            t = time_engine(sizes, batch, x, y, dtype, args.repeats, threads, ahead)
            sps = args.samples / t
            row = {
                "case": f"{'-'.join(map(str, sizes))}/b{batch}",
                "dtype": dtype,
                "samples_per_s": round(sps),
                "blas_threads": threads,
                "gather_ahead": ahead,
                "fraction_of_blas_peak": round(sps * 6 * n_weights(sizes) / peak, 3),
            }
            if have_torch:
                tt = time_torch(sizes, batch, x, labels, dtype, args.repeats)
                row["torch_samples_per_s"] = round(args.samples / tt)
                row["ratio_vs_torch"] = round(tt / t, 2)
            else:
                row["torch_samples_per_s"] = row["ratio_vs_torch"] = None
            print(json.dumps(row), flush=True)
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", str(args.samples)],
        capture_output=True,
        text=True,
        check=True,
    )
    print(out.stdout.strip())


if __name__ == "__main__":
    main()
