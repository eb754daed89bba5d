"""What durability costs: journal appends with fsync, and a reader catching up.

Runs on the filesystem of the repository (where the model store lives), not /tmp.

- append: one train-step record (8 rows of the digits model) appended and fsynced, as
  /train-step does before it answers;
- up-to-date check: the per-request check of a worker that has nothing to catch up on
  (the median of 21 batches of 1,000, after its first call, which catches up, timed apart);
- catch-up: a worker that finds N new steps replays them (read, decode, apply_step);
- step: apply_step alone, for comparison.

    .venv/bin/python bench/journal_bench.py
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service.registry import Registry  # noqa: E402
from training.data import load_digits  # noqa: E402
from training.journal import FileJournal, Record  # noqa: E402
from training.online import apply_step  # noqa: E402
from training.store import ModelStore  # noqa: E402


def main(n: int = 500) -> None:
    digits = load_digits()
    tmp = Path(tempfile.mkdtemp(dir=ROOT, prefix=".bench-journal-"))
    try:
        (tmp / "digits").mkdir()
        shutil.copytree(ROOT / "models" / "digits" / "1", tmp / "digits" / "1")
        store = ModelStore(tmp)
        writer, reader = Registry(store), Registry(store)
        writer.refresh()
        reader.refresh()
        x = digits.x[:8].astype(np.float32)
        model = writer.get("digits").model
        y = model.targets_from_labels([str(v) for v in digits.y[:8]])
        with threadpool_limits(1, user_api="blas"):
            t0 = time.perf_counter()
            for _ in range(n):
                writer.train_step("digits", x, y, None, None)
            step_total = time.perf_counter() - t0
            (tmp / "scratch").mkdir()
            journal = FileJournal(tmp / "scratch")  # appends alone, beside the store
            t0 = time.perf_counter()
            with journal.locked():
                for i in range(n):
                    journal.append(
                        Record(
                            "step",
                            {"segment": "bench", "step": i, "learning_rate": 0.01, "momentum": 0.9},
                            x,
                            y,
                        )
                    )
            append = (time.perf_counter() - t0) / n
            writer.snapshot("digits")
            reader2 = Registry(store)
            reader2.refresh()
            t0 = time.perf_counter()
            for _ in range(n):
                apply_step(model, x, y, 0.01, 0.9)
            pure = (time.perf_counter() - t0) / n
        # catch-up: a fresh journal with n steps, replayed by a worker that has none
        with threadpool_limits(1, user_api="blas"):
            for _ in range(n):
                writer.train_step("digits", x, y, None, None)
            cold = Registry(store)
            t0 = time.perf_counter()
            cold.refresh()  # reads the base, replays every step
            catch_up = (time.perf_counter() - t0) / n
        # The up-to-date check alone: reader2 has n steps to catch up on first (timed
        # apart), then nothing changes, and the median of 21 batches of 1,000 calls is
        # what a request of an up-to-date worker pays.
        t0 = time.perf_counter()
        reader2.get("digits")
        first_call = time.perf_counter() - t0
        batches = []
        for _ in range(21):
            t0 = time.perf_counter()
            for _ in range(1000):
                reader2.get("digits")
            batches.append((time.perf_counter() - t0) / 1000)
        stat = statistics.median(batches)
        print(
            json.dumps(
                {
                    "case": "journal",
                    "steps": n,
                    "append_fsync_ms": round(append * 1000, 3),
                    "appends_per_s": round(1 / append),
                    "train_step_in_process_ms": round(step_total / n * 1000, 3),
                    "train_steps_per_s_in_process": round(n / step_total),
                    "apply_step_ms": round(pure * 1000, 3),
                    "catch_up_ms_per_step": round(catch_up * 1000, 3),
                    "first_call_catch_up_ms": round(first_call * 1000, 3),
                    "up_to_date_check_us": round(stat * 1e6, 3),
                    "up_to_date_check_us_range": [
                        round(min(batches) * 1e6, 3),
                        round(max(batches) * 1e6, 3),
                    ],
                }
            )
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
