"""The bench's host-idle meter (scripts/bench_support.py): pure parsing and accounting."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

from bench_support import HostIdle, cpu_times


def test_cpu_times_counts_idle_and_iowait_of_all_cpus() -> None:
    line = "cpu  100 5 50 800 20 0 3 0 0 0"
    assert cpu_times(line) == (820, 978)
    assert cpu_times("cpu 1 2 3 4") == (4, 10)  # an old kernel without iowait


def test_host_idle_adds_up_only_the_measured_calls() -> None:
    idle = HostIdle()
    assert "0% idle" in idle.describe()  # nothing measured yet

    def busy() -> float:
        end = time.monotonic() + 0.05
        while time.monotonic() < end:
            pass
        return 1.5

    assert idle.measure(busy) == 1.5
    measured = idle.total
    assert measured > 0 and 0 <= idle.idle <= measured
    time.sleep(0.05)  # not measured: the totals stay
    assert idle.total == measured
    assert "% idle during these calls" in idle.describe()
