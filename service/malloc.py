"""Keep freed heap memory in the worker instead of returning it to the kernel at once.

glibc's malloc serves a large numpy array (a 1,000-row batch's activations are about
1 MB) with mmap, or trims the heap as soon as it is freed; the next request then pays
page faults and zeroing for the same memory again: BENCHMARKS.md (Serving) has the
1,000-row forward pass of the digits model with the defaults and with these thresholds.
The price is that a worker may hold up to TRIM_THRESHOLD of freed memory.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
TRIM_THRESHOLD = 128 * 1024 * 1024
MMAP_THRESHOLD = 64 * 1024 * 1024


def keep_freed_memory() -> bool:
    """Raise glibc's trim and mmap thresholds; False where there is no glibc mallopt."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = (
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
        and mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    )
    if not ok:
        logging.getLogger("bpserve").warning("mallopt refused the thresholds")
    return ok
