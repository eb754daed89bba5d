"""How much CPU time the hypervisor gave to others while a benchmark ran.

Why: these machines are virtual and shared.  On 2026-12-01 the same benchmark gave
784-128-10/b32 at 86,912 samples/s in one run and 35,766 in the next, with nothing else
running here; /proc/stat's steal column is where that shows.  Each benchmark row carries
the fraction of CPU time stolen while it ran, so a reader can tell a quiet run from a
contended one before comparing figures across runs.
"""

from __future__ import annotations


def _cpu_ticks() -> tuple[int, int] | None:
    """(steal, all) clock ticks of every CPU since boot; None where /proc/stat is absent."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    # cpu user nice system idle iowait irq softirq steal guest guest_nice
    if len(fields) < 9 or fields[0] != "cpu":
        return None
    ticks = [int(v) for v in fields[1:9]]
    return ticks[7], sum(ticks)


class Steal:
    """Started on creation; ``fraction()`` is the share of CPU time stolen since then."""

    def __init__(self) -> None:
        self.start = _cpu_ticks()

    def fraction(self) -> float | None:
        end = _cpu_ticks()
        if self.start is None or end is None or end[1] == self.start[1]:
            return None
        return round((end[0] - self.start[0]) / (end[1] - self.start[1]), 3)
