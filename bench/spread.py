"""Do a client's kept-alive connections spread over the workers?  Runs of wrk against
the default 2 workers, each worker's CPU time read from /proc before and after each run.

A run where one worker's CPU time did not grow had all the connections on the other; a
run far below the median is the same thing seen from the client.  Also each run's CPU
time of everything else on the machine, and its requests per second of worker CPU: a
slow run with both workers busy is the machine, not the spread.  ``serve_bench.py
--spread`` runs this against bpserve as configured (and ``--gunicorn-args`` lets it try
gunicorn's own options, e.g. ``--reuse-port``).
"""

from __future__ import annotations

import os
import resource
import statistics
from pathlib import Path

from steal import Steal

TICK = os.sysconf("SC_CLK_TCK")


def workers_of(master: int) -> list[int]:
    """The pids whose parent is ``master`` (gunicorn's workers)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == master:
            pids.append(int(entry.name))
    return sorted(pids)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def busy_seconds() -> float:
    """CPU time all CPUs spent not idle since boot (/proc/stat, steal left out)."""
    f = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(f) - f[3] - f[4] - f[7]) / TICK


def children_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def spread(
    run_wrk, wrk: str, url: str, script, master: int, connections: int, runs: int, seconds: int
) -> dict:
    """``runs`` runs of wrk -t1 -c``connections``; per run the rps and each worker's CPU."""
    steal = Steal()
    pids = workers_of(master)
    each, shares, others = [], [], []
    for _ in range(runs):
        before = [cpu_seconds(p) for p in pids]
        busy, kids = busy_seconds(), children_seconds()
        r = run_wrk(wrk, url, seconds, connections, script)
        grew = [round(cpu_seconds(p) - b, 2) for p, b in zip(pids, before)]
        wrk_s = children_seconds() - kids
        others.append(round(busy_seconds() - busy - sum(grew) - wrk_s, 2))
        each.append(r["rps"])
        shares.append(grew)
    median = statistics.median(each)
    return {
        "case": f"spread over {len(pids)} workers, wrk -t1 -c{connections}, {seconds} s",
        "runs": runs,
        "cpu_steal": steal.fraction(),
        "rps_median": median,
        "rps_min_over_median": round(min(each) / median, 3),
        "runs_below_0.8_of_median": sum(x < 0.8 * median for x in each),
        "runs_with_a_worker_under_10pct": sum(min(g) < 0.1 * sum(g) for g in shares),
        "min_worker_share": round(min(min(g) / max(sum(g), 1e-9) for g in shares), 3),
        # requests per second of the workers' CPU, per run: where this falls as far as
        # the rate while both workers stay busy, the machine slowed, not the spread
        "requests_per_worker_cpu_s_each_run": [
            round(rps * seconds / max(sum(g), 1e-9)) for rps, g in zip(each, shares)
        ],
        "rps_each_run": each,
        "worker_cpu_s_each_run": shares,
        # CPU time of everything else on the machine (other helpers' tests) in each run
        "others_cpu_s_each_run": others,
    }
