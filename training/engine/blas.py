"""Level-1 BLAS (axpby, axpy) from the OpenBLAS that numpy itself runs on.

Why: an optimizer step is bound by memory traffic, not arithmetic.  In numpy,
v <- mu v - eta g; w <- w + v is four passes over the parameters (one per ufunc), all
on one core.  OpenBLAS's axpby (y <- a x + b y) and axpy (y <- a x + y) do it in two
passes, and split each over the BLAS threads, so with two threads each core updates
the half of the parameters that it holds in its cache after the gradient product.
BENCHMARKS.md ("The optimizer step on BLAS") has the step timed both ways in the training
loop (`bench/train_profile.py 784-512-512-10 128 --threads 2 --step both`).

numpy exposes no level-1 BLAS, so the two routines are called through ctypes on the very
library numpy loaded (found by threadpoolctl), never on a second copy with a thread pool
of its own.  Where numpy runs on another BLAS, or the symbols are missing, ``routines``
returns None and the caller keeps its numpy code.
"""

from __future__ import annotations

import ctypes
import functools
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from threadpoolctl import ThreadpoolController

Array = np.ndarray
_PREFIXES = ("scipy_cblas_", "cblas_")  # numpy's wheels ship OpenBLAS as scipy-openblas
_SUFFIXES = ("64_", "_64", "")  # a suffix marks an ILP64 build (64-bit integers)
enabled = True  # benchmarks set it False to time numpy's path in the same process


@dataclass(frozen=True)
class Routines:
    """axpby and axpy for one dtype, on 1-D contiguous arrays of that dtype."""

    _axpby: Callable[..., None]
    _axpy: Callable[..., None]

    def axpby(self, alpha: float, x: Array, beta: float, y: Array) -> None:
        """y <- alpha x + beta y, in place."""
        self._axpby(y.size, alpha, x.ctypes.data, 1, beta, y.ctypes.data, 1)

    def axpy(self, alpha: float, x: Array, y: Array) -> None:
        """y <- alpha x + y, in place."""
        self._axpy(y.size, alpha, x.ctypes.data, 1, y.ctypes.data, 1)


def routines(*arrays: Array) -> Routines | None:
    """The BLAS routines for these arrays, or None where numpy must do the work.

    The arrays must be 1-D, C-contiguous, writeable (C code writing into read-only
    memory would crash the process where numpy raises), of one dtype and size.
    """
    first = arrays[0]
    if not enabled or first.dtype not in (np.float32, np.float64) or first.ndim != 1:
        return None
    for a in arrays:
        if a.dtype != first.dtype or a.shape != first.shape:
            return None
        if not (a.flags.c_contiguous and a.flags.writeable):
            return None
    return _load().get(first.dtype.char)


@functools.cache
def _load() -> dict[str, Routines]:
    lib = _numpy_openblas()
    if lib is None:
        return {}
    for prefix in _PREFIXES:
        for suffix in _SUFFIXES:
            if hasattr(lib, f"{prefix}saxpby{suffix}"):
                return _bind(lib, prefix, suffix)
    return {}


def _numpy_openblas() -> ctypes.CDLL | None:
    """The OpenBLAS numpy loaded: the one shipped inside numpy, else the only one loaded.

    Not any OpenBLAS under site-packages: scipy, for one, ships its own copy there.
    """
    package = os.path.realpath(os.path.dirname(np.__file__))
    homes = (package + os.sep, package + ".libs" + os.sep)  # numpy/..., numpy.libs/...
    found = [
        c
        for c in ThreadpoolController().select(internal_api="openblas").lib_controllers
        if c.filepath
    ]
    ours = [c for c in found if os.path.realpath(c.filepath).startswith(homes)]
    pick = ours or (found if len(found) == 1 else [])
    return pick[0].dynlib if pick else None


def _bind(lib: ctypes.CDLL, prefix: str, suffix: str) -> dict[str, Routines]:
    ilp64 = bool(suffix) or b"USE64BITINT" in _config(lib, suffix)
    n = ctypes.c_int64 if ilp64 else ctypes.c_int32
    ptr = ctypes.c_void_p
    out = {}
    for char, letter, real in (("f", "s", ctypes.c_float), ("d", "d", ctypes.c_double)):
        axpby = getattr(lib, f"{prefix}{letter}axpby{suffix}")
        axpby.argtypes, axpby.restype = [n, real, ptr, n, real, ptr, n], None
        axpy = getattr(lib, f"{prefix}{letter}axpy{suffix}")
        axpy.argtypes, axpy.restype = [n, real, ptr, n, ptr, n], None
        out[char] = Routines(axpby, axpy)
    return out


def _config(lib: ctypes.CDLL, suffix: str) -> bytes:
    for name in (f"scipy_openblas_get_config{suffix}", f"openblas_get_config{suffix}"):
        fn = getattr(lib, name, None)
        if fn is not None:
            fn.restype = ctypes.c_char_p
            return fn() or b""
    return b""
