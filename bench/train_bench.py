"""Training speed of the engine against PyTorch on the CPU, side by side in one run.

One epoch over 60,000 synthetic samples per case, ReLU hidden layers and a softmax /
cross-entropy output on both sides, SGD with momentum 0.9, both sides given the
machine's cores to choose from: the engine picks its BLAS threads per shape, and PyTorch
runs at 1 and at 2 threads (torch.set_num_threads) in the same rounds, the engine compared
against the better of the two in each round.
Prints one JSON object per case (with the BLAS matmul peak measured beside it, see
``compare``), then one for memory.

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
from collections.abc import Callable
from itertools import pairwise
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from steal import Steal

from training.engine.network import Network
from training.engine.optimizers import SGD
from training.engine.trainer import blas_threads, gathers_ahead, train_epoch

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


def time_engine(sizes, batch, x, y, dtype, seed, threads, ahead) -> float:
    """Seconds for one epoch of the engine, from a fresh network."""
    net = Network(sizes, "relu", loss="cross_entropy", dtype=dtype, seed=seed)
    opt = SGD(learning_rate=LR, momentum=MOMENTUM)
    state = opt.init_state(net.params)
    rng = np.random.default_rng(seed)
    with threadpool_limits(threads, user_api="blas"):
        t0 = time.perf_counter()
        train_epoch(net, opt, state, x, y, batch, rng, gather_ahead=ahead)
        return time.perf_counter() - t0


TORCH_THREADS = (1, 2)


def time_torch(sizes, batch, x, labels, dtype, seed, threads: int = CORES) -> float:
    """Seconds for one epoch of the same network, batch and optimizer in PyTorch."""
    import torch

    torch.set_num_threads(threads)
    tdtype = torch.float32 if dtype == "float32" else torch.float64
    tx = torch.from_numpy(x).to(tdtype)
    ty = torch.from_numpy(labels)
    torch.manual_seed(seed)
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
    return time.perf_counter() - t0


def paired_rounds(
    sides: dict[str, Callable[[int], float]],
    dtype: str,
    rounds: int,
    peak: Callable[[str], float] | None = None,
) -> tuple[dict[str, list[float]], list[float], float | None]:
    """Each round: the BLAS peak, then one epoch of every side (called with the round's
    number as seed), the order rotating from round to round.  Returns each side's epoch
    times and each round's peak, and the share of CPU time stolen meanwhile.

    Why rounds: these machines are shared, and their speed drifts by up to 2x within
    minutes (seen: the 2048 x 2048 peak at 157, 240 and 179 GFLOP/s in three runs of
    one afternoon).  Timing all of one side and then all of the other turns that drift
    into the ratio; a ratio of two epochs run back to back, and a fraction of the peak
    measured beside its epoch, mostly cancel it.
    """
    peak = peak or blas_peak
    names = list(sides)
    times: dict[str, list[float]] = {name: [] for name in names}
    peaks = []
    steal = Steal()
    for r in range(rounds):
        peaks.append(peak(dtype))
        for name in names[r % len(names) :] + names[: r % len(names)]:
            times[name].append(sides[name](r))
    return times, peaks, steal.fraction()


def against_best(
    engine: list[float], others: dict[str, list[float]], n_samples: int
) -> dict[str, Any]:
    """The engine's epoch times against several configurations of the other side, timed
    in the same rounds.  Each round's ratio is taken against that round's best (fastest)
    configuration, so the other side gets the thread count that suits the shape, as the
    engine does; the ratio against each configuration is reported too."""
    best = [min(ts) for ts in zip(*others.values())]
    ratios = [b / e for e, b in zip(engine, best)]
    medians = {name: float(np.median(ts)) for name, ts in others.items()}
    row: dict[str, Any] = {
        "torch_samples_per_s": round(n_samples / float(np.median(best))),
        "torch_best": min(medians, key=medians.__getitem__),
        "ratio_vs_torch": round(float(np.median(ratios)), 2),
        "ratio_each_round": [round(q, 2) for q in ratios],
    }
    for name, ts in others.items():
        row[f"{name}_samples_per_s"] = round(n_samples / medians[name])
        row[f"ratio_vs_{name}"] = round(float(np.median([t / e for e, t in zip(engine, ts)])), 2)
    return row


def compare(sizes, batch, x, y, labels, dtype, rounds, have_torch, peak=None) -> dict:
    """The engine against PyTorch (at 1 and at 2 threads) in ``paired_rounds``, each
    figure quoted as the median over the rounds of what one round measured."""
    threads = blas_threads(sizes, batch, CORES)
    ahead = gathers_ahead(sizes, batch, threads, CORES)
    flops = 6 * n_weights(sizes) * len(x)
    sides = {"engine": lambda r: time_engine(sizes, batch, x, y, dtype, r, threads, ahead)}
    torch_sides = [f"torch_{t}t" for t in TORCH_THREADS] if have_torch else []
    for t, name in zip(TORCH_THREADS, torch_sides):
        sides[name] = lambda r, t=t: time_torch(sizes, batch, x, labels, dtype, r, t)
    # Untimed first: each side's one-time costs (thread pools, first allocations).
    few = slice(0, 20 * batch)
    time_engine(sizes, batch, x[few], y[few], dtype, 0, threads, ahead)
    for t in TORCH_THREADS if have_torch else ():
        time_torch(sizes, batch, x[few], labels[few], dtype, 0, t)
    times, peaks, stolen = paired_rounds(sides, dtype, rounds, peak)
    engine = times["engine"]
    row = {
        "case": f"{'-'.join(map(str, sizes))}/b{batch}",
        "dtype": dtype,
        "rounds": rounds,
        "samples_per_s": round(len(x) / float(np.median(engine))),
        "blas_threads": threads,
        "gather_ahead": ahead,
        "cpu_steal": stolen,
        "blas_peak_gflops": round(float(np.median(peaks)) / 1e9, 1),
        "fraction_of_blas_peak": round(
            float(np.median([flops / t / p for t, p in zip(engine, peaks)])), 3
        ),
    }
    if have_torch:
        row.update(against_best(engine, {n: times[n] for n in torch_sides}, len(x)))
    else:
        row["torch_samples_per_s"] = row["ratio_vs_torch"] = None
    return row


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
    from training.engine.trainer import fit

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
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of (peak, engine, torch at 1 and 2 threads)"
    )
    parser.add_argument("--quick", action="store_true", help="10,000 samples, one round")
    parser.add_argument("--dtypes", default="float32,float64")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child)
        return
    if args.quick:
        args.samples, args.rounds = 10_000, 1
    try:
        import torch  # noqa: F401

        have_torch = True
    except ImportError:
        have_torch = False
        print(json.dumps({"note": "torch not installed: `make bench` installs torch==2.13.0"}))

    for dtype in args.dtypes.split(","):
        x, y, labels = synthetic(args.samples, dtype)
        for sizes, batch in CASES:
            row = compare(sizes, batch, x, y, labels, dtype, args.rounds, have_torch)
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
