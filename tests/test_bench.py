"""The benchmark scripts' own logic, so that what BENCHMARKS.md is made from keeps working.

Nothing here needs wrk, and the PyTorch pairing runs only where torch is installed (the
bench extra).  The timing figures themselves are not asserted: shared machines, see
bench/steal.py."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from compact_reference import compact_epoch
from steal import Steal
from train_bench import compare, synthetic


def test_steal_is_a_share_of_the_cpu_time_since_it_started():
    meter = Steal()
    end = time.process_time() + 0.2
    while time.process_time() < end:
        pass
    share = meter.fraction()
    if not Path("/proc/stat").exists():
        assert share is None
        return
    assert share is not None and 0.0 <= share <= 1.0


def test_compare_without_torch_reports_every_round_of_the_engine():
    x, y, labels = synthetic(600, "float32")
    row = compare([784, 30, 10], 10, x, y, labels, "float32", 2, have_torch=False)
    assert row["case"] == "784-30-10/b10" and row["rounds"] == 2
    assert row["samples_per_s"] > 0 and row["blas_peak_gflops"] > 0
    assert 0 < row["fraction_of_blas_peak"] < 1
    assert row["ratio_vs_torch"] is None and row["torch_samples_per_s"] is None
    assert row["cpu_steal"] is None or 0 <= row["cpu_steal"] <= 1


@pytest.mark.parametrize("rounds", [1, 3])
def test_compare_with_torch_pairs_each_round(rounds):
    pytest.importorskip("torch")
    x, y, labels = synthetic(600, "float32")
    row = compare([784, 30, 10], 10, x, y, labels, "float32", rounds, have_torch=True)
    assert len(row["ratio_each_round"]) == rounds
    assert min(row["ratio_each_round"]) <= row["ratio_vs_torch"] <= max(row["ratio_each_round"])
    # the median of the rounds' own ratios, not a ratio of best times
    assert row["ratio_vs_torch"] == statistics.median(row["ratio_each_round"])


def test_the_compact_reference_trainer_learns():
    # The yardstick of bench/compact_reference.py must do the work it stands for: one
    # epoch of 3,000 samples takes the synthetic teacher's labels far above chance (0.1).
    x, y, labels = synthetic(3000, "float32")
    _, ws, bs = compact_epoch([784, 30, 10], 10, x, y, 0)
    a = x
    for i, (w, b) in enumerate(zip(ws, bs)):
        a = a @ w + b
        if i < len(ws) - 1:
            a = np.maximum(a, 0)
    assert (a.argmax(axis=1) == labels).mean() > 0.5
