"""The training loop's matrix products in numpy's BLAS against PyTorch's, side by side.

Each product of one training batch (forward z = [a 1] [W; b], the gradient
[a 1]^T delta, and delta W^T back to the previous layer), timed hot in one process on
the same number of threads for numpy (threadpoolctl) and torch (set_num_threads).
It shows how much of the gap to PyTorch in bench/train_bench.py is the BLAS itself.

    .venv/bin/python bench/gemm_bench.py                  # 784-512-512-10, batch 128
    .venv/bin/python bench/gemm_bench.py 784-128-10 32 --threads 1
"""

from __future__ import annotations

import argparse
import json
import time
from itertools import pairwise

import numpy as np
from threadpoolctl import threadpool_limits


def best_us(fn, n: int = 200, repeats: int = 5) -> float:
    fn()
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best * 1e6


def products(sizes: list[int], batch: int) -> list[tuple[str, tuple, tuple, bool, bool]]:
    """(name, left shape, right shape, transpose left, transpose right) per product."""
    out = []
    for layer, (n_in, n_out) in enumerate(pairwise(sizes)):
        out.append((f"forward {layer}", (batch, n_in + 1), (n_in + 1, n_out), False, False))
        out.append((f"gradient {layer}", (batch, n_in + 1), (batch, n_out), True, False))
        if layer:
            out.append((f"back {layer}", (batch, n_out), (n_in, n_out), False, True))
    return out


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="?", default="784-512-512-10")
    parser.add_argument("batch", nargs="?", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split("-")]
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    total_np = total_torch = 0.0
    with threadpool_limits(args.threads, user_api="blas"):
        for name, ls, rs, tl, tr in products(sizes, args.batch):
            a = rng.standard_normal(ls, dtype=np.float32)
            b = rng.standard_normal(rs, dtype=np.float32)
            a, b = (a.T if tl else a), (b.T if tr else b)
            out = np.empty((a.shape[0], b.shape[1]), np.float32)
            ta, tb, tout = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(out)
            t_np = best_us(lambda a=a, b=b, out=out: np.matmul(a, b, out=out))
            t_torch = best_us(lambda ta=ta, tb=tb, tout=tout: torch.matmul(ta, tb, out=tout))
            total_np, total_torch = total_np + t_np, total_torch + t_torch
            print(
                json.dumps(
                    {
                        "product": name,
                        "shape": f"{a.shape[0]}x{a.shape[1]} @ {b.shape[0]}x{b.shape[1]}",
                        "numpy_us": round(t_np, 1),
                        "torch_us": round(t_torch, 1),
                        "numpy_over_torch": round(t_np / t_torch, 2),
                    }
                ),
                flush=True,
            )
    print(
        json.dumps(
            {
                "case": f"{args.sizes}/b{args.batch}",
                "threads": args.threads,
                "numpy_blas": np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"],
                "torch_blas": "mkl" if torch.backends.mkl.is_available() else "other",
                "numpy_us": round(total_np, 1),
                "torch_us": round(total_torch, 1),
                "numpy_over_torch": round(total_np / total_torch, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
