"""Time to load and verify the committed default model from the store.

Each load reads the manifest, validates it, hashes every file, reads the safetensors
files and checks shapes: what the service does when it starts or hot-reloads.

    .venv/bin/python bench/store_bench.py
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from training.store import ModelStore  # noqa: E402


def main(repeats: int = 200) -> None:
    store = ModelStore(ROOT / "models")
    first_t0 = time.perf_counter()
    store.load("digits")
    first = time.perf_counter() - first_t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        store.load("digits")
        times.append(time.perf_counter() - t0)
    times.sort()
    print(
        json.dumps(
            {
                "case": "load digits (latest), verified",
                "first_ms": round(first * 1000, 3),
                "median_ms": round(statistics.median(times) * 1000, 3),
                "p99_ms": round(times[int(0.99 * len(times)) - 1] * 1000, 3),
                "goal_ms": 50,
            }
        )
    )


if __name__ == "__main__":
    main()
