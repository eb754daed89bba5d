"""The benchmark scripts' own logic, so that what BENCHMARKS.md is made from keeps working.

Nothing here needs wrk or torch: the pairing and the ratio against PyTorch's better
thread count are checked on given times (one more test runs the real thing where torch
is installed, the bench extra).  The timing figures themselves are not asserted: shared
machines, see bench/steal.py."""

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
from train_bench import against_best, compare, paired_rounds, synthetic


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


def test_paired_rounds_rotate_the_order_and_measure_a_peak_per_round():
    calls = []

    def side(name):
        return lambda r: calls.append((name, r)) or float(len(calls))

    sides = {name: side(name) for name in ("engine", "torch_1t", "torch_2t")}
    peaks = iter([10.0, 20.0, 30.0, 40.0])
    times, got_peaks, _ = paired_rounds(sides, "float32", 4, peak=lambda dtype: next(peaks))
    assert got_peaks == [10.0, 20.0, 30.0, 40.0]
    assert [name for name, _ in calls] == [
        *("engine", "torch_1t", "torch_2t"),
        *("torch_1t", "torch_2t", "engine"),
        *("torch_2t", "engine", "torch_1t"),
        *("engine", "torch_1t", "torch_2t"),
    ]
    assert [r for _, r in calls] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]  # seed = round
    # each side's times in round order: the call number that produced them
    assert times == {
        "engine": [1.0, 6.0, 8.0, 10.0],
        "torch_1t": [2.0, 4.0, 9.0, 11.0],
        "torch_2t": [3.0, 5.0, 7.0, 12.0],
    }


def test_the_engine_is_compared_with_the_better_torch_of_each_round():
    engine = [1.0, 1.0, 2.0]
    torch = {"torch_1t": [3.0, 5.0, 4.0], "torch_2t": [4.0, 2.0, 8.0]}
    row = against_best(engine, torch, 600)
    # round by round: min(3, 4)/1, min(5, 2)/1, min(4, 8)/2
    assert row["ratio_each_round"] == [3.0, 2.0, 2.0]
    assert row["ratio_vs_torch"] == 2.0  # their median, not a ratio of best times
    assert row["ratio_vs_torch_1t"] == 3.0 and row["ratio_vs_torch_2t"] == 4.0
    assert row["torch_1t_samples_per_s"] == 150 and row["torch_2t_samples_per_s"] == 150
    assert row["torch_samples_per_s"] == 200  # the median of the best times (3, 2, 4)
    # the better side is never worse than either thread count alone
    assert row["ratio_vs_torch"] <= min(row["ratio_vs_torch_1t"], row["ratio_vs_torch_2t"])
    assert against_best([1.0], {"torch_1t": [2.0], "torch_2t": [5.0]}, 10)["torch_best"] == (
        "torch_1t"
    )


@pytest.mark.parametrize("rounds", [1, 3])
def test_compare_with_torch_pairs_each_round(rounds):
    pytest.importorskip("torch")
    x, y, labels = synthetic(600, "float32")
    row = compare([784, 30, 10], 10, x, y, labels, "float32", rounds, have_torch=True)
    assert len(row["ratio_each_round"]) == rounds
    assert min(row["ratio_each_round"]) <= row["ratio_vs_torch"] <= max(row["ratio_each_round"])
    # the median of the rounds' own ratios, not a ratio of best times
    assert row["ratio_vs_torch"] == statistics.median(row["ratio_each_round"])
    assert row["ratio_vs_torch"] <= min(row["ratio_vs_torch_1t"], row["ratio_vs_torch_2t"])


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
